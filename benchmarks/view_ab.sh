#!/usr/bin/env bash
# Camera A/B on Meta-World's small-target tasks: the same 50 expert demos per task (same seeds, so
# the same trajectories) recorded from each camera in turn, one policy per camera trained for the
# same wall-clock (the default preset at 96 px, batch 64, the lr following the clock), 10 evaluation
# episodes per task on seeds disjoint from training, and reach's goal tracking
# (benchmarks/goal_tracking.py). The arms run one after another: on a shared machine compare their
# steps as well as their success. Writes benchmarks/results/view_ab.json (VIEW_RESULT for another).
#   bash benchmarks/view_ab.sh [OUT]                     # workspace vs corner2, 20 min each, ~50 min
#   VIEW_CAMERAS="workspace corner2" VIEW_MINUTES=20 VIEW_TASKS=reach-v3,push-v3,pick-place-v3 bash benchmarks/view_ab.sh OUT
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/view_ab}"
CAMERAS="${VIEW_CAMERAS:-workspace corner2}"
MINUTES="${VIEW_MINUTES:-20}"
TASKS="${VIEW_TASKS:-reach-v3,push-v3,pick-place-v3}"
RESULT="${VIEW_RESULT:-$repo/benchmarks/results/view_ab.json}"
source "$repo/benchmarks/ab_arm.sh"
for cam in $CAMERAS; do
  arm="$OUT/$cam"
  mkdir -p "$arm"
  [ -f "$arm/data/meta/info.json" ] || \
    "$V" collect metaworld --tasks "$TASKS" --episodes-per-task 50 --image-size 96 --workers 2 \
      --cameras "$cam" --out "$arm/data"
  ab_arm "$arm" "$arm/data" "$cam" "$MINUTES" "$TASKS"
done
"$repo/.venv/bin/python" "$repo/benchmarks/mt10_summary.py" views "$OUT" "$RESULT" \
  --command "VIEW_CAMERAS=\"$CAMERAS\" VIEW_MINUTES=$MINUTES VIEW_TASKS=$TASKS bash benchmarks/view_ab.sh" \
  --recipe "heldout protocol; 50 demos/task at 96 px per camera (same seeds); default preset at 96 px, batch 64, $MINUTES min each with the lr following the clock; 10 eval episodes/task on seeds disjoint from training"
