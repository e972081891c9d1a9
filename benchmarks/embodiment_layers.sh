#!/usr/bin/env bash
# Per-embodiment input/output layers (HPT-style) against one shared padded projection (Octo-style),
# on the same three-robot mixture, steps, batch and seed (issue 13, part 3), and so the first results
# of one policy trained across Meta-World's Sawyer, ALOHA and a robosuite Panda, evaluated on each.
#   bash benchmarks/embodiment_layers.sh [OUT] [DEMOS] [STEPS] [EVAL_EPISODES]   # /tmp/emb 50 3000 50
# Data (64 px, seeds 0..DEMOS-1): Meta-World drawer-open, window-open, peg-insert-side (corner2 ->
# primary); ALOHA transfer-cube (top -> primary); robosuite Lift on Panda (agentview -> primary,
# eye-in-hand -> wrist). Each robot keeps its own rate (train.mixed_fps) and normalization.
# The two arms differ only in model.embodiment_layers (shared | separate) and train side by side, one
# torch thread each, so they see the same machine load; evaluation on held-out seeds (disjoint from
# the demonstrations). benchmarks/embodiment_layers_summary.py writes
# benchmarks/results/embodiment_layers.json (EMB_RESULT=PATH writes elsewhere, e.g. for a dry run).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/emb}"
DEMOS="${2:-50}"
STEPS="${3:-3000}"
EVAL="${4:-50}"
MW_TASKS="drawer-open,window-open,peg-insert-side"
export MUJOCO_GL="${MUJOCO_GL:-egl}" EGL_PLATFORM="${EGL_PLATFORM:-surfaceless}"
mkdir -p "$OUT/data" "$OUT/runs" "$OUT/eval"
collected() { grep -q '"complete": true' "$1/meta/vlaforge_collect.json" 2>/dev/null; }
common=(--episodes-per-task "$DEMOS" --image-size 64 --workers 2 --no-progress)
collected "$OUT/data/mw" || "$V" collect metaworld --tasks "$MW_TASKS" "${common[@]}" --out "$OUT/data/mw"
collected "$OUT/data/aloha" || "$V" collect aloha --tasks transfer-cube "${common[@]}" --out "$OUT/data/aloha"
collected "$OUT/data/rs" || "$V" collect robosuite --robots Panda --tasks lift "${common[@]}" --out "$OUT/data/rs"

train() {  # $1 = shared | separate
  local run="$OUT/runs/$1"
  [ -f "$run/checkpoints/last/model.safetensors" ] && return 0
  local start; start=$(date +%s)
  OMP_NUM_THREADS=1 "$V" train --preset default --data "$OUT/data/mw" --data "$OUT/data/aloha" \
    --data "$OUT/data/rs" --steps "$STEPS" --batch-size 64 --seed 0 --device cpu --out "$run" \
    --set "model.cameras=[primary,wrist]" --set model.image_size=64 --set train.mixed_fps=true \
    --set model.embodiment_layers="$1" --set train.tensorboard=false --set train.val_every=500 \
    --set train.save_every=1000 > "$OUT/runs/$1.log" 2>&1
  echo "$(( $(date +%s) - start ))" > "$run/wall_s"
}
train shared & a=$!
train separate & b=$!
wait "$a" "$b"

evaluate() {  # $1 = arm; the three embodiments one after another, one env worker each
  local ckpt="$OUT/runs/$1/checkpoints/last" ev="$OUT/eval/$1"
  local opts=(--episodes-per-task "$EVAL" --workers 1 --videos-per-task 0 --overwrite --no-progress)
  [ -f "$ev-mw/eval_info.json" ] || "$V" eval --policy "$ckpt" --simulator metaworld --suite "$MW_TASKS" \
    "${opts[@]}" --out "$ev-mw"
  [ -f "$ev-aloha/eval_info.json" ] || "$V" eval --policy "$ckpt" --simulator aloha --suite transfer-cube \
    "${opts[@]}" --out "$ev-aloha"
  [ -f "$ev-rs/eval_info.json" ] || "$V" eval --policy "$ckpt" --simulator robosuite --suite lift \
    --robots Panda "${opts[@]}" --out "$ev-rs"
}
evaluate shared > "$OUT/eval/shared.log" 2>&1 & a=$!
evaluate separate > "$OUT/eval/separate.log" 2>&1 & b=$!
wait "$a" "$b"
"$repo/.venv/bin/python" "$repo/benchmarks/embodiment_layers_summary.py" "$OUT" \
  "${EMB_RESULT:-$repo/benchmarks/results/embodiment_layers.json}" --demos "$DEMOS" --steps "$STEPS" --eval-episodes "$EVAL"
