#!/usr/bin/env bash
# A small success comparison of image encoders on 3 easy Meta-World tasks (the quickstart's):
# 10 expert demos per task at 96 px (collected once), the default preset at 96 px, batch 32, the same
# STEPS for every arm (conv stem from scratch; EfficientNet-Lite0 frozen; last 3 units trained),
# 10 held-out episodes per task. Torch at 1 thread (a shared 2-core machine). Writes
# benchmarks/results/vision_encoder_success.json; everything else stays under $OUT.
#   bash benchmarks/vision_encoder_success.sh [OUT] [STEPS] [ARMS]   # /tmp/effnet, 400, all three
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/effnet}"
STEPS="${2:-400}"
ARMS="${3:-conv effnet-frozen effnet-last3}"
TASKS=drawer-close-v3,door-open-v3,handle-press-v3
declare -A SETS=(
  [conv]=""
  [effnet-frozen]="--set model.image.encoder=efficientnet-lite0"
  [effnet-last3]="--set model.image.encoder=efficientnet-lite0 --set model.image.trainable_blocks=3"
)
[ -f "$OUT/data/meta/info.json" ] || \
  "$V" collect metaworld --tasks "$TASKS" --episodes-per-task 10 --image-size 96 --workers 1 --out "$OUT/data"
for arm in $ARMS; do
  name="$arm-$STEPS"
  [ -f "$OUT/runs/$name.time.json" ] && continue
  rm -rf "$OUT/runs/$name"
  start=$(date +%s)
  # shellcheck disable=SC2086  # SETS holds several words on purpose
  OMP_NUM_THREADS=1 nice -n 5 "$V" train --preset default --data "$OUT/data" --steps "$STEPS" --batch-size 32 \
    --out "$OUT/runs/$name" --set model.image_size=96 --set train.val_every=100000 \
    --set train.save_every=100000 --set train.tensorboard=false ${SETS[$arm]}
  mid=$(date +%s)
  nice -n 5 "$V" eval --policy "$OUT/runs/$name/checkpoints/last" --suite "$TASKS" --episodes-per-task 10 \
    --workers 2 --out "$OUT/evals/$name" --overwrite
  echo "{\"arm\": \"$arm\", \"steps\": $STEPS, \"train_s\": $((mid - start)), \"eval_s\": $(($(date +%s) - mid))}" \
    > "$OUT/runs/$name.time.json"
done
"$repo/.venv/bin/python" - "$OUT" "$repo/benchmarks/results/vision_encoder_success.json" <<'EOF'
import json, os, sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[2]).parents[1]))
from mt10_summary import eval_summary
out, target = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for timing in sorted((out / "runs").glob("*.time.json")):
    t = json.loads(timing.read_text())
    name = timing.name.removesuffix(".time.json")
    ev = eval_summary(out / "evals" / name)
    rows.append(t | {"success": ev["mean_over_tasks"], "per_task": ev["per_task"], "eval_wall_s": ev["eval_wall_s"]})
target.write_text(json.dumps({
    "benchmark": "vision_encoder_success",
    "recipe": "3 tasks x 10 demos at 96 px; default preset at 96 px, batch 32, equal steps per arm, "
              "torch 1 thread; 10 held-out episodes per task",
    "loadavg_1_5_15_at_summary": os.getloadavg(),
    "rows": rows,
}, indent=2) + "\n")
print(target.read_text())
EOF
