# Sourced by view_ab.sh and lever_ab.sh: one A/B arm on Meta-World demos.
#   ab_arm ARM DATA CAMERA MINUTES TASKS [--set KEY=VALUE ...]
# trains the default preset at 96 px (batch 64, MINUTES of training with the lr following the clock,
# plus the given overrides) on DATA into ARM/run unless ARM/run exists, evaluates 10 episodes per
# task on seeds disjoint from training into ARM/eval, and when TASKS has reach-v3 writes its goal
# tracking (benchmarks/goal_tracking.py) to ARM/goal.json. Needs $repo and $V set by the caller.
ab_arm() {
  local arm="$1" data="$2" camera="$3" minutes="$4" tasks="$5"
  shift 5
  mkdir -p "$arm"
  [ -f "$arm/run/run.json" ] || \
    "$V" train --preset default --data "$data" --steps 20000 --batch-size 64 --out "$arm/run" \
      --set model.image_size=96 --set model.cameras="$camera" --set train.max_minutes="$minutes" \
      --set train.lr_follows_clock=true --set train.val_every=500 --set train.save_every=1000 \
      --set train.tensorboard=false "$@"
  "$V" eval --policy "$arm/run/checkpoints/last" --suite "$tasks" --episodes-per-task 10 --workers 2 \
    --out "$arm/eval" --overwrite
  case ",$tasks," in
    *,reach-v3,*) "$repo/.venv/bin/python" "$repo/benchmarks/goal_tracking.py" \
      --policy "$arm/run/checkpoints/last" --out "$arm/goal.json" ;;
  esac
}
