#!/usr/bin/env bash
# Head comparison on Meta-World MT10 (issue 8, part 4): the default preset at 96 px with each of the
# regression, flow, diffusion and token heads, trained on the same data with the same budget (2400
# steps of batch 64, as benchmarks/mt10_cpu.sh at 2400 steps) - plus ar-fast and ar-bins (issue 15,
# the pi0-fast and openvla token schemes decoded autoregressively; not in the default list: give
# them as HEAD arguments) - evaluated on the same 10 held-out
# episodes per task, and each checkpoint's latency per chunk (batch 1, 1 thread). Writes
# benchmarks/results/mt10_heads.json; everything else stays under $OUT (default /tmp/mt10).
# About 23 minutes per head on 2 cores; a head whose run or eval is already in $OUT is not redone.
# Rows of heads not run here are kept from the existing results file (merged, not rewritten).
#   bash benchmarks/mt10_heads.sh [OUT] [HEAD ...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
V="$repo/.venv/bin/vlaforge"
OUT="${1:-/tmp/mt10}"
shift || true
if [ $# -gt 0 ]; then HEADS=("$@"); else HEADS=(regression flow diffusion tokens); fi
mkdir -p "$OUT/heads"
[ -f "$OUT/data/meta/info.json" ] || \
  "$V" collect metaworld --tasks mt10 --episodes-per-task 50 --image-size 96 --workers 2 --out "$OUT/data"
for head in "${HEADS[@]}"; do
  run="$OUT/heads/$head"
  extra=(--set "model.head.kind=$head")
  case "$head" in
    tokens) extra+=(--set model.normalization=bounds) ;;
    # issue 15: the autoregressive decoders (pi0-FAST's FAST tokens, RT-2/OpenVLA's bins one by one)
    ar-fast | ar-bins) extra+=(--set model.normalization=bounds) ;;
    flow | diffusion) extra+=(--set model.head.num_readouts=4) ;;  # as the default-flow preset
  esac
  [ -f "$run/checkpoints/last/model.safetensors" ] || \
    "$V" train --preset default --data "$OUT/data" --steps 2400 --batch-size 64 --out "$run" \
      --set model.image_size=96 --set train.val_every=400 --set train.save_every=800 \
      --set train.tensorboard=false "${extra[@]}"
  [ -f "$run/eval/eval_info.json" ] || \
    "$V" eval --policy "$run/checkpoints/last" --suite mt10 --episodes-per-task 10 --workers 2 \
      --out "$run/eval" --overwrite
  "$V" bench latency --policy "$run/checkpoints/last" --threads 1 --iters 200 --json >"$run/latency.json"
done
"$repo/.venv/bin/python" "$repo/benchmarks/mt10_summary.py" heads "$OUT" "$repo/benchmarks/results/mt10_heads.json"
