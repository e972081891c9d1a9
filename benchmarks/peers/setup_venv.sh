#!/usr/bin/env bash
# The LeRobot side venv of the peer benchmark (benchmarks/peers.sh): LeRobot 0.4.4 on this machine's
# CPU torch 2.13.0, kept apart from vlaforge's venv. LeRobot pins torch<2.11 and torchvision<0.26,
# which would pull a CUDA torch of several GB, so torch goes first and LeRobot and torchvision 0.28
# (the release for torch 2.13; a CUDA build whose Python half is all LeRobot uses, see
# benchmarks/peers/lerobot_shim.py) go in with --no-deps, then LeRobot's runtime needs by name.
#   bash benchmarks/peers/setup_venv.sh [VENV]    (default /tmp/lerobot-venv; ~2 min)
set -euo pipefail
VENV="${1:-/tmp/lerobot-venv}"
python3.11 -m venv "$VENV"
P="$VENV/bin/pip"
"$P" install -q torch==2.13.0
"$P" install -q --no-deps lerobot==0.4.4 torchvision==0.28.0
"$P" install -q "datasets>=4,<5" "huggingface_hub<0.36" "diffusers>=0.27.2,<0.36" "accelerate>=1.10,<2" \
  pandas pyarrow "av>=15,<16" jsonlines draccus==0.10.0 "packaging<26" "einops>=0.8,<0.9" termcolor \
  deepdiff "gymnasium>=1.1.1,<2" pillow numpy websockets msgpack safetensors "opencv-python-headless<4.13" \
  "imageio>=2.34" pyserial "pynput<1.9" torch==2.13.0
"$VENV/bin/python" - <<'PY'
import sys, torch
sys.path.insert(0, "benchmarks/peers")
import lerobot_shim
lerobot_shim.install()
from lerobot.policies.act.modeling_act import ACTPolicy  # noqa: F401
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: F401
assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__, torch.__version__
print(f"LeRobot side venv ready: {sys.prefix} (torch {torch.__version__})")
PY
