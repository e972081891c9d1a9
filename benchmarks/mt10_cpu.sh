#!/usr/bin/env bash
# Meta-World MT10 on a 2-core CPU in about an hour: collect 50 expert demos per task at 96 px
# (~4 min), train the default preset at 96 px for 6000 steps of batch 64 (59.6 min measured at 106
# samples/s; a 90-min cap stops a runaway), evaluate 10 held-out episodes per task (~4 min), and write the
# summary to benchmarks/results/mt10_cpu.json. Everything else stays under $OUT (default /tmp/mt10).
#   bash benchmarks/mt10_cpu.sh [OUT]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/mt10}"
STEPS="${MT10_STEPS:-6000}"
mkdir -p "$OUT"
[ -f "$OUT/data/meta/info.json" ] || \
  "$V" collect metaworld --tasks mt10 --episodes-per-task 50 --image-size 96 --workers 2 --out "$OUT/data"
if [ -f "$OUT/run/run.json" ]; then  # an interrupted run continues where it stopped
  "$V" train --resume "$OUT/run" --steps "$STEPS"
else
  "$V" train --preset default --data "$OUT/data" --steps "$STEPS" --batch-size 64 --out "$OUT/run" \
    --set model.image_size=96 --set train.max_minutes=90 --set train.val_every=500 \
    --set train.save_every=1000 --set train.tensorboard=false
fi
"$V" eval --policy "$OUT/run/checkpoints/last" --suite mt10 --episodes-per-task 10 --workers 2 \
  --out "$OUT/eval" --overwrite
"$repo/.venv/bin/python" "$repo/benchmarks/mt10_summary.py" cpu "$OUT" "$repo/benchmarks/results/mt10_cpu.json" \
  --recipe "50 demos/task at 96 px; default preset at 96 px, batch 64, $STEPS steps (90 min cap); 10 held-out eval episodes/task"
