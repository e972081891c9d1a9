#!/usr/bin/env bash
# First results per embodiment (issue 13, section 5): one policy per simulator, trained on that
# simulator's scripted demos alone and evaluated on each of its tasks (and arms) on held-out seeds.
#   bash benchmarks/per_embodiment.sh [OUT] [DEMOS] [STEPS] [EVAL_EPISODES]   # /tmp/per_emb 50 3000 50
#   PARTS="robosuite" bash benchmarks/per_embodiment.sh ...                     # one part only
# robosuite: Lift and Stack on all five arms (Panda, UR5e, Kinova3, IIWA, Sawyer), one dataset, one
#   policy (agentview -> primary, eye-in-hand -> wrist); RS_EVAL episodes per task and arm (default
#   EVAL_EPISODES / 2: ten rows of evaluation).
# aloha: transfer-cube and insertion, one dataset, one policy (top -> primary).
# Both: DEMOS scripted demos per task (and arm) at 64 px, the default preset, STEPS of batch 64, seed
# 0, the whole machine for each training run (one after the other). Every phase is skipped when its
# output exists, so a rerun resumes. benchmarks/per_embodiment_summary.py writes
# benchmarks/results/per_embodiment.json (PER_EMB_RESULT=PATH writes elsewhere).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/per_emb}"
DEMOS="${2:-50}"
STEPS="${3:-3000}"
EVAL="${4:-50}"
RS_EVAL="${RS_EVAL:-$(( (EVAL + 1) / 2 ))}"
PARTS="${PARTS:-robosuite aloha}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" EGL_PLATFORM="${EGL_PLATFORM:-surfaceless}"
mkdir -p "$OUT/data" "$OUT/runs" "$OUT/eval"
collected() { grep -q '"complete": true' "$1/meta/vlaforge_collect.json" 2>/dev/null; }
common=(--episodes-per-task "$DEMOS" --image-size 64 --workers 2 --no-progress)

train() {  # $1 = part, $2 = camera slots; then extra options
  local part="$1" slots="$2" run="$OUT/runs/$1"
  shift 2
  [ -f "$run/checkpoints/last/model.safetensors" ] && return 0
  local start; start=$(date +%s)
  "$V" train --preset default --data "$OUT/data/$part" --steps "$STEPS" --batch-size 64 --seed 0 \
    --device cpu --out "$run" --set "model.cameras=[$slots]" --set model.image_size=64 \
    --set train.tensorboard=false --set train.val_every=500 --set train.save_every=1000 "$@" \
    > "$OUT/runs/$part.log" 2>&1
  echo "$(( $(date +%s) - start ))" > "$run/wall_s"
}

evaluate() {  # $1 = part, $2 = episodes per task; then eval options
  local part="$1" episodes="$2" ev="$OUT/eval/$1"
  shift 2
  [ -f "$ev/eval_info.json" ] && return 0
  "$V" eval --policy "$OUT/runs/$part/checkpoints/last" --episodes-per-task "$episodes" --workers 2 \
    --videos-per-task 1 --overwrite --no-progress --out "$ev" "$@" > "$OUT/eval/$part.log" 2>&1
}

for part in $PARTS; do
  case "$part" in
    robosuite)
      collected "$OUT/data/robosuite" || "$V" collect robosuite --robots Panda,UR5e,Kinova3,IIWA,Sawyer \
        --tasks lift,stack "${common[@]}" --out "$OUT/data/robosuite"
      train robosuite primary,wrist
      evaluate robosuite "$RS_EVAL" --simulator robosuite --suite lift,stack \
        --robots Panda,UR5e,Kinova3,IIWA,Sawyer ;;
    aloha)
      collected "$OUT/data/aloha" || "$V" collect aloha --tasks transfer-cube,insertion "${common[@]}" \
        --out "$OUT/data/aloha"
      train aloha primary
      evaluate aloha "$EVAL" --simulator aloha --suite transfer-cube,insertion ;;
    *) echo "per_embodiment.sh: unknown part '$part' (robosuite, aloha)" >&2; exit 2 ;;
  esac
done
"$repo/.venv/bin/python" "$repo/benchmarks/per_embodiment_summary.py" "$OUT" \
  "${PER_EMB_RESULT:-$repo/benchmarks/results/per_embodiment.json}" --demos "$DEMOS" --steps "$STEPS"
