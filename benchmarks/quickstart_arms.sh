#!/usr/bin/env bash
# `vlaforge quickstart` arms, one after another, each the whole 15-minute job (collect, train to the
# clock, evaluate 10 held-out episodes per task) on the same tasks with its own options, summarised in
# benchmarks/results/quickstart_arms.json (QS_RESULT for another). QS_ARGS are every arm's options
# (default: the five tasks of issue 18's quickstart goal, one of them push, from the workspace view);
# QS_ARMS are "NAME [OPTIONS...]" separated by ';'. The arms run one after another on a shared machine:
# compare their steps as well as their success.
#   bash benchmarks/quickstart_arms.sh [OUT]          # ~15 min per arm
#   QS_ARMS="base; w96 --image-size 96 --episodes-per-task 50" bash benchmarks/quickstart_arms.sh OUT
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/quickstart_arms}"
FIVE="drawer-close-v3,door-open-v3,window-open-v3,window-close-v3,push-v3"
QS_ARGS="${QS_ARGS:---cameras workspace --tasks $FIVE}"
QS_ARMS="${QS_ARMS:-base; pushx3 --set train.task_weights=push-v3=3; w96 --image-size 96 --episodes-per-task 50 --set train.task_weights=push-v3=4}"
RESULT="${QS_RESULT:-$repo/benchmarks/results/quickstart_arms.json}"
mkdir -p "$OUT"
IFS=';' read -ra arms <<< "$QS_ARMS"
for arm in "${arms[@]}"; do
  read -ra words <<< "$arm"
  [ ${#words[@]} -gt 0 ] || continue
  name="${words[0]}"
  # shellcheck disable=SC2086  # QS_ARGS is a list of options
  "$V" quickstart --out "$OUT/$name" $QS_ARGS "${words[@]:1}"
done
"$repo/.venv/bin/python" "$repo/benchmarks/mt10_summary.py" quickstarts "$OUT" "$RESULT" \
  --command "QS_ARGS=\"$QS_ARGS\" QS_ARMS=\"$QS_ARMS\" bash benchmarks/quickstart_arms.sh" \
  --recipe "vlaforge quickstart per arm: the 15-minute budget, training to the clock with the lr following it, 10 eval episodes/task on held-out seeds; the arms' options on top of QS_ARGS"
