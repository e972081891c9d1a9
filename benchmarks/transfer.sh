#!/usr/bin/env bash
# The transfer study (foundation-recipe issue, part 3): does the `base` generalist adapt to targets it
# never saw better than a policy trained from scratch on the same demonstrations for the same steps?
#   bash benchmarks/transfer.sh [OUT] [STEPS] [DEMOS]      # defaults: /tmp/transfer 1000 "10"
# Targets held out of pretraining: (a) Meta-World ML45-test's 5 tasks, (b) robosuite UR5e on Lift
# (an arm the generalist never saw; same OSC_POSE space as its Panda/Sawyer/IIWA/Kinova3).
# For each target and demo count: scratch (`vlaforge train --preset default`) and full fine-tuning
# (`vlaforge finetune --from base`); at 10 demos on ML45-test also frozen (trunk + encoders frozen,
# head trains) and LoRA (rank 8 on the trunk). Each trains STEPS steps of batch 64 at 64 px and is
# evaluated on 10 held-out seeds per task; benchmarks/transfer_summary.py writes
# benchmarks/results/transfer.json and docs/transfer.html.
# Environment: VLAFORGE_HOME (default OUT/home) holds the pretrained `base`; PRETRAIN_STEPS and
# PRETRAIN_MINUTES cut the CPU tier's pretraining (default: the tier's 12,000 steps / 120 min);
# POINTS="mw10-scratch ur10-full" runs only those points (two shells can split the work).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/transfer}"
STEPS="${2:-1000}"
DEMOS="${3:-10}"
export VLAFORGE_HOME="${VLAFORGE_HOME:-$OUT/home}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" EGL_PLATFORM="${EGL_PLATFORM:-surfaceless}"
mkdir -p "$OUT/data" "$OUT/runs" "$OUT/eval"
common=(--batch-size 64 --steps "$STEPS" --device cpu --set train.tensorboard=false
  --set train.val_every=250 --set train.save_every=500)

wanted() { [ -z "${POINTS:-}" ] || [[ " $POINTS " == *" $1 "* ]]; }
collected() { grep -q '"complete": true' "$1/meta/vlaforge_collect.json" 2>/dev/null; }

if [ -z "${POINTS:-}" ] || [[ "$POINTS" == *full* || "$POINTS" == *frozen* || "$POINTS" == *lora* ]]; then
  pre=()
  [ -n "${PRETRAIN_STEPS:-}" ] && pre+=(--steps "$PRETRAIN_STEPS")
  [ -n "${PRETRAIN_MINUTES:-}" ] && pre+=(--max-minutes "$PRETRAIN_MINUTES")
  [ -f "$VLAFORGE_HOME/pretrained/base/model.safetensors" ] || "$V" pretrain --recipe base "${pre[@]}"
fi

for n in $DEMOS; do
  mw="$OUT/data/ml45-test-$n" ur="$OUT/data/ur5e-lift-$n"
  collected "$mw" || "$V" collect metaworld --tasks ml45-test --episodes-per-task "$n" --image-size 64 \
    --workers 2 --out "$mw" --no-progress
  collected "$ur" || "$V" collect robosuite --robots UR5e --tasks lift --episodes-per-task "$n" \
    --image-size 64 --workers 2 --out "$ur" --no-progress
  modes="scratch full"
  [ "$n" = 10 ] && modes="scratch full frozen lora"
  for target in mw ur; do
    data="$mw"; [ "$target" = ur ] && data="$ur"
    for mode in $modes; do
      [ "$target" = ur ] && [ "$mode" != scratch ] && [ "$mode" != full ] && continue
      point="$target$n-$mode" run="$OUT/runs/$target$n-$mode"
      wanted "$point" || continue
      if [ ! -f "$run/checkpoints/last/model.safetensors" ]; then
        start=$(date +%s)
        case "$mode" in
          scratch)  # the same cameras the generalist sees: corner2 on Meta-World, both on robosuite
            cams=(); [ "$target" = ur ] && cams=(--set "model.cameras=[primary,wrist]")
            "$V" train --preset default --data "$data" --out "$run" "${common[@]}" --set model.image_size=64 "${cams[@]}" ;;
          full) "$V" finetune --from base --data "$data" --out "$run" "${common[@]}" ;;
          frozen) "$V" finetune --from base --data "$data" --out "$run" "${common[@]}" \
            --freeze 'obs_encoder.*' --freeze 'task_encoder.*' --freeze 'trunk.*' ;;
          lora) "$V" finetune --from base --data "$data" --out "$run" "${common[@]}" --lora-rank 8 ;;
        esac
        echo "$(( $(date +%s) - start ))" > "$run/wall_s"
      fi
      if [ ! -f "$OUT/eval/$point/eval_info.json" ]; then
        if [ "$target" = mw ]; then
          "$V" eval --policy "$run/checkpoints/last" --suite ml45-test --episodes-per-task 10 --workers 1 \
            --videos-per-task 0 --out "$OUT/eval/$point" --overwrite
        else
          "$V" eval --policy "$run/checkpoints/last" --simulator robosuite --suite lift --robots UR5e \
            --episodes-per-task 10 --workers 1 --videos-per-task 0 --out "$OUT/eval/$point" --overwrite
        fi
      fi
    done
  done
done
"$repo/.venv/bin/python" "$repo/benchmarks/transfer_summary.py" "$OUT" "$repo/benchmarks/results/transfer.json" \
  --html "$repo/docs/transfer.html" --steps "$STEPS"
