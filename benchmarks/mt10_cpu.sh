#!/usr/bin/env bash
# Meta-World MT10 on a 2-core CPU in about 35 minutes: collect 50 expert demos per task at 96 px,
# train the default preset (26-minute cap), evaluate 10 held-out episodes per task, and write the
# summary to benchmarks/results/mt10_cpu.json. Everything else stays under $OUT (default /tmp/mt10).
#   bash benchmarks/mt10_cpu.sh [OUT]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/mt10}"
mkdir -p "$OUT"
[ -f "$OUT/data/meta/info.json" ] || \
  "$V" collect metaworld --tasks mt10 --episodes-per-task 50 --image-size 96 --workers 2 --out "$OUT/data"
"$V" train --preset default --data "$OUT/data" --steps 2400 --batch-size 64 --out "$OUT/run" \
  --set model.image_size=96 --set train.max_minutes=26 --set train.val_every=400 \
  --set train.save_every=800 --set train.tensorboard=false
"$V" eval --policy "$OUT/run/checkpoints/last" --suite mt10 --episodes-per-task 10 --workers 2 \
  --out "$OUT/eval" --overwrite
"$repo/.venv/bin/python" - "$OUT" "$repo/benchmarks/results/mt10_cpu.json" <<'PY'
import json, sys
info = json.load(open(f"{sys.argv[1]}/eval/eval_info.json"))
keep = {k: info[k] for k in ("created", "suite", "episodes_per_task", "execution", "per_group", "overall", "timing")}
keep["per_task"] = {t: {"success_rate": m["success_rate"], "mean_length": m.get("mean_length")} for t, m in info["per_task"].items()}
keep["command"] = "bash benchmarks/mt10_cpu.sh"
keep["recipe"] = "50 demos/task at 96 px; default preset at 96 px, batch 64, <=2400 steps capped at 26 min; 10 eval episodes/task"
open(sys.argv[2], "w").write(json.dumps(keep, indent=2) + "\n")
print(f"MT10: {100 * info['overall']['success_rate_task_mean']:.1f}% -> {sys.argv[2]}")
PY
