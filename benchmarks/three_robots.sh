#!/usr/bin/env bash
# One policy across three embodiments (issue 13, part 3): Meta-World's Sawyer (4-d, 80 fps, corner2),
# ALOHA (14-d, 50 fps, top) and a robosuite Panda (7-d, 20 fps, agentview + eye-in-hand) trained as one
# mixture with camera slots (primary, wrist; ALOHA and Meta-World have no wrist slot: masked) and
# each robot at its own control rate, then that one checkpoint evaluated on each simulator.
# A smoke-scale run by default (a few demos and steps: it shows the path works, not a success rate):
#   bash benchmarks/three_robots.sh [OUT] [EPISODES] [STEPS]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/three_robots}"
EPISODES="${2:-3}"
STEPS="${3:-200}"
mkdir -p "$OUT"
common=(--episodes-per-task "$EPISODES" --image-size 64 --workers 2)
[ -f "$OUT/mw/meta/info.json" ] || "$V" collect metaworld --tasks reach "${common[@]}" --out "$OUT/mw"
[ -f "$OUT/aloha/meta/info.json" ] || "$V" collect aloha --tasks transfer-cube "${common[@]}" --out "$OUT/aloha"
[ -f "$OUT/rs/meta/info.json" ] || \
  "$V" collect robosuite --robots Panda --tasks lift "${common[@]}" --out "$OUT/rs"
[ -f "$OUT/run/checkpoints/last/model.safetensors" ] || \
  "$V" train --data "$OUT/mw" --data "$OUT/aloha" --data "$OUT/rs" --steps "$STEPS" --batch-size 32 \
    --out "$OUT/run" --set "model.cameras=[primary,wrist]" --set model.image_size=64 \
    --set train.mixed_fps=true --set train.tensorboard=false --set train.val_every=100
ckpt="$OUT/run/checkpoints/last"
"$V" eval --policy "$ckpt" --simulator metaworld --suite reach --episodes-per-task 2 --workers 1 \
  --videos-per-task 0 --out "$OUT/eval_mw" --overwrite
"$V" eval --policy "$ckpt" --simulator aloha --suite transfer-cube --episodes-per-task 2 --workers 1 \
  --videos-per-task 0 --out "$OUT/eval_aloha" --overwrite
"$V" eval --policy "$ckpt" --simulator robosuite --suite lift --robots Panda --episodes-per-task 2 \
  --workers 1 --videos-per-task 0 --out "$OUT/eval_rs" --overwrite
