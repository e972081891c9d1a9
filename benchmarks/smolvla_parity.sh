#!/usr/bin/env bash
# Create the LeRobot side environment of the SmolVLA parity test (tests/models/test_smolvla_parity.py)
# and run LeRobot's half of it. Not part of setup.sh: LeRobot pins torch<2.11 and transformers<5,
# so it is installed with --no-deps next to vlaforge's own torch (2.13.0 CPU) and transformers (5.24.0),
# the versions the parity is measured with (see docs/vlm-backbones.md for why transformers must match).
#   bash benchmarks/smolvla_parity.sh            # venv at /tmp/vlm-lerobot-venv (or $VENV)
#   VLAFORGE_LEROBOT_PYTHON=/tmp/vlm-lerobot-venv/bin/python pytest tests/models/test_smolvla_parity.py
set -euo pipefail
VENV=${VENV:-/tmp/vlm-lerobot-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
"$PIP" install -q torch==2.13.0
"$PIP" install -q --no-deps lerobot==0.4.4
"$PIP" install -q transformers==5.24.0 "num2words>=0.5.14,<0.6" safetensors "draccus==0.10.0" \
  "einops>=0.8,<0.9" packaging termcolor "deepdiff>=7,<10" "gymnasium>=1.1,<2" "jsonlines>=4,<5" pillow \
  "datasets>=4,<5" "accelerate>=1.10,<2" "imageio>=2.34,<3" "diffusers>=0.27.2,<0.36" "pyserial>=3.5,<4" \
  "av>=15,<16"
OUT=${OUT:-/tmp/vlm/parity}
HF_HUB_OFFLINE=1 "$VENV/bin/python" "$(dirname "$0")/smolvla_parity_lerobot.py" --out "$OUT"
