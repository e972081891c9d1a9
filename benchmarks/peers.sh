#!/usr/bin/env bash
# What a user would pick instead, at the same CPU budget: LeRobot 0.4.4's ACT and Diffusion Policy
# trained on the quickstart's data for the wall-clock vlaforge's quickstart trained, each served by
# benchmarks/peers/lerobot_serve.py (openpi protocol) and evaluated by `vlaforge eval --policy ws://`
# on the quickstart's evaluation seeds. Writes benchmarks/results/peers.json and prints the table.
#   bash benchmarks/peers.sh [OUT]         (default /tmp/peers; ~15 min quickstart + per peer its
#                                           training minutes + evaluation)
# PEERS="act diffusion" picks peers; PEER_MINUTES fixes their budget (default: the quickstart's
# measured training minutes); PEER_EPISODES (default 10) evaluation episodes per task; DP_EPISODES
# (default 2) episodes per task for Diffusion Policy, whose chunks take seconds each on a CPU (10
# DDIM steps of a 263 M-parameter U-Net; LeRobot's default is 100 DDPM steps, minutes per episode);
# LEROBOT_VENV is the side venv (made if missing).
# OURS=DIR takes vlaforge's row from a finished run instead of the quickstart: a
# benchmarks/mt10_cpu.sh folder (data, run, eval); the peers then train on DIR/data for its training
# minutes, get a one-hot of the task in their state (neither reads language; PEER_TASK_ONEHOT=0
# turns it off) and are evaluated on its tasks and protocol; RESULT (default
# benchmarks/results/peers.json, peers_mt10.json with OURS) is the JSON written. MT10:
#   OURS=/tmp/mt10 DP_EPISODES=1 bash benchmarks/peers.sh /tmp/peers-mt10   (~60 min per peer + eval)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/peers}"
PEERS="${PEERS:-act diffusion}"
LR="${LEROBOT_VENV:-/tmp/lerobot-venv}"
PY="$repo/.venv/bin/python"
mkdir -p "$OUT"
[ -x "$LR/bin/python" ] || bash "$repo/benchmarks/peers/setup_venv.sh" "$LR"

if [ -n "${OURS:-}" ]; then
  ours="$OURS" onehot="${PEER_TASK_ONEHOT:-1}" RESULT="${RESULT:-$repo/benchmarks/results/peers_mt10.json}"
  [ -f "$ours/eval/eval_info.json" ] || { echo "peers: OURS=$ours has no eval/eval_info.json (run benchmarks/mt10_cpu.sh first)" >&2; exit 2; }
else
  # 1. vlaforge's quickstart: collect, train to the 15-minute budget, evaluate (reused when done).
  ours="$OUT/ours" onehot="${PEER_TASK_ONEHOT:-0}" RESULT="${RESULT:-$repo/benchmarks/results/peers.json}"
  [ -f "$ours/eval/eval_info.json" ] || "$V" quickstart --out "$ours"
fi
"$V" bench latency --policy "$ours/run/checkpoints/last" --threads 1 --iters 50 --json > "$ours/latency.json"
read -r TASKS PROTOCOL CAMERA < <("$PY" -c "import json,sys; i=json.load(open(sys.argv[1])); e=i.get('env') or {}; \
print(','.join(i['per_task']), e.get('protocol', 'heldout'), (e.get('cameras') or ['corner2'])[0])" "$ours/eval/eval_info.json")
MINUTES="${PEER_MINUTES:-$("$PY" "$repo/benchmarks/peers_summary.py" --train-minutes "$ours")}"
task_arg=(); [ "$onehot" = 1 ] && task_arg=(--task-onehot)
echo "peers get $MINUTES min of training each on $TASKS ($PROTOCOL protocol, camera $CAMERA${task_arg:+, task one-hot})"

port=8310
for peer in $PEERS; do
  run="$OUT/$peer"
  episodes="${PEER_EPISODES:-10}"
  extra=()
  if [ "$peer" = diffusion ]; then
    episodes="${DP_EPISODES:-2}"
    extra=(--config noise_scheduler_type=DDIM --config num_inference_steps=10)
  fi
  [ -f "$run/train.json" ] || HF_HUB_OFFLINE=1 "$LR/bin/python" "$repo/benchmarks/peers/lerobot_train.py" \
    --policy "$peer" --data "$ours/data" --camera "$CAMERA" --minutes "$MINUTES" --out "$run" ${task_arg[@]+"${task_arg[@]}"} ${extra[@]+"${extra[@]}"}
  PYTHONPATH="$repo/src" "$LR/bin/python" "$repo/benchmarks/peers/lerobot_serve.py" --run "$run" \
    --threads 1 --latency "$([ "$peer" = diffusion ] && echo 5 || echo 30)" | tail -1 > "$run/latency.json"
  PYTHONPATH="$repo/src" "$LR/bin/python" "$repo/benchmarks/peers/lerobot_serve.py" --run "$run" --port "$port" \
    > "$run/serve.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 120); do grep -q "serving" "$run/serve.log" && break; sleep 1; done
  "$V" eval --policy "ws://127.0.0.1:$port" --suite "$TASKS" --episodes-per-task "$episodes" --seed 0 --protocol "$PROTOCOL" \
    --out "$run/eval" --overwrite --no-progress
  kill "$server"; wait "$server" 2>/dev/null || true
  port=$((port + 1))
done
"$PY" "$repo/benchmarks/peers_summary.py" "$OUT" "$RESULT" --ours "$ours"
