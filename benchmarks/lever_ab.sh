#!/usr/bin/env bash
# Model-lever A/B on Meta-World's small-target tasks: one set of 50 expert demos per task (one
# camera), one policy per arm trained for the same wall-clock (the default preset at 96 px, batch
# 64, the lr following the clock, plus the arm's --set overrides), 10 evaluation episodes per task
# on seeds disjoint from training, and reach's goal tracking (benchmarks/goal_tracking.py). The arms
# run one after another: on a shared machine compare their steps as well as their success. An arm
# is NAME or NAME:KEY=VALUE,KEY=VALUE (overrides of `vlaforge train --set`). Writes
# benchmarks/results/lever_ab.json (LEVER_RESULT for another).
#   bash benchmarks/lever_ab.sh [OUT]                    # base vs 32 keypoints, 20 min each, ~50 min
#   LEVER_ARMS="base keypoints:model.image.keypoints=32" LEVER_CAMERA=workspace LEVER_MINUTES=20 \
#     LEVER_TASKS=reach-v3,push-v3,pick-place-v3 bash benchmarks/lever_ab.sh OUT
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/lever_ab}"
ARMS="${LEVER_ARMS:-base keypoints:model.image.keypoints=32}"
CAMERA="${LEVER_CAMERA:-workspace}"
MINUTES="${LEVER_MINUTES:-20}"
TASKS="${LEVER_TASKS:-reach-v3,push-v3,pick-place-v3}"
RESULT="${LEVER_RESULT:-$repo/benchmarks/results/lever_ab.json}"
source "$repo/benchmarks/ab_arm.sh"
mkdir -p "$OUT"
[ -f "$OUT/data/meta/info.json" ] || \
  "$V" collect metaworld --tasks "$TASKS" --episodes-per-task 50 --image-size 96 --workers 2 \
    --cameras "$CAMERA" --out "$OUT/data"
for spec in $ARMS; do
  name="${spec%%:*}"
  case "$name" in data | "" ) echo "lever_ab: arm name '$name' is reserved or empty" >&2; exit 2 ;; esac
  SETS=()
  if [ "$spec" != "$name" ]; then
    IFS=, read -ra kvs <<< "${spec#*:}"
    for kv in "${kvs[@]}"; do SETS+=(--set "$kv"); done
  fi
  ab_arm "$OUT/$name" "$OUT/data" "$CAMERA" "$MINUTES" "$TASKS" ${SETS[@]+"${SETS[@]}"}
done
"$repo/.venv/bin/python" "$repo/benchmarks/mt10_summary.py" arms "$OUT" "$RESULT" \
  --command "LEVER_ARMS=\"$ARMS\" LEVER_CAMERA=$CAMERA LEVER_MINUTES=$MINUTES LEVER_TASKS=$TASKS bash benchmarks/lever_ab.sh" \
  --recipe "heldout protocol; 50 demos/task at 96 px from $CAMERA, shared by the arms; default preset at 96 px, batch 64, $MINUTES min each with the lr following the clock, plus each arm's overrides; 10 eval episodes/task on seeds disjoint from training"
