"""`vlaforge quickstart`: collect -> train -> evaluate -> report in one command, fitted to a time budget.

The stages call the library functions behind the public commands (`vlaforge.data.collect.run`,
`vlaforge.train.command.run_train`, `vlaforge.eval.command.run`) with settings chosen for a small
CPU; each stage prints the command line that reproduces it. The training length is fitted to the
budget: the run trains for what the budget leaves after collection and a reserve for evaluation,
its lr schedule following the clock (`train.lr_follows_clock`), and a few calibration steps beforehand
say how many steps that is expected to be (`--steps` fixes the steps instead, `--train-minutes` caps
the time). The GPU tier is the same job at another size
(`benchmarks/gpu_mt50.sh`: `--tasks mt50 --episodes-per-task 50 --image-size 128 --batch-size 256
--device cuda`). A rerun with the same `--out` reuses a finished dataset and a finished training run
with the same settings, and resumes an interrupted one.

    out/data/          the LeRobot v3 dataset (scripted expert demonstrations)
    out/run/           the training run (checkpoints/last is a servable policy, log.jsonl)
    out/eval/          eval_info.json, report.html and videos on held-out seeds
    out/report.html    one page: success table and chart, loss curve, rollout videos
    out/quickstart.json  the settings, the time per stage, the steps planned and trained
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlaforge.config import apply_overrides, option, to_argv, to_dict
from vlaforge.errors import VlaforgeError
from vlaforge.eval.config import cameras_of

# Easy tasks whose target object is large in the corner2 view at 64 px (a 1,500-step multi-task run
# measured 100%, 100% and 90% on them; reach, whose goal marker is ~1 px at 64 px, reached 10%).
DEFAULT_TASKS = "drawer-close-v3,door-open-v3,handle-press-v3"
CLOCK_HEADROOM = 2
"""A calibrated run's step cap, in multiples of the steps the calibration expects to fit."""
SUMMARY_FILE = "quickstart.json"
TRAIN_MARKER = "quickstart_train.json"


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart does; every field is a command-line option."""

    out: str = "quickstart"
    """Output directory: data/, run/, eval/, report.html, quickstart.json."""
    tasks: str = DEFAULT_TASKS
    """Tasks and/or suites, comma-separated (anything `vlaforge collect --tasks` takes: mt10, mt50, ...)."""
    simulator: str = "metaworld"
    """The registered simulator to collect and evaluate on."""
    budget_minutes: float = 15.0
    """Wall time for the whole job, report included."""
    episodes_per_task: int = 20
    """Successful demonstrations collected per task."""
    eval_episodes: int = 10
    """Evaluation episodes per task, on seeds disjoint from the demonstrations."""
    image_size: int = 64
    """Collection and policy resolution in pixels."""
    cameras: str = ""
    """Cameras to collect and read, comma-separated (default: the simulator's default camera;
    Meta-World's `workspace` is corner2 cropped to the workspace)."""
    preset: str = "default"
    """Model preset (`vlaforge presets`)."""
    batch_size: int = 64
    """Training batch size."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device of the policy for training and evaluation (auto: CUDA when available)."""
    workers: int = 2
    """Simulation processes for collection and evaluation."""
    videos_per_task: int = 2
    """Evaluation videos kept per task (the first successes and the first failures)."""
    max_steps: int = 500
    """Evaluation step limit per episode (Meta-World's 500)."""
    eval_reserve_s: float = 150.0
    """Seconds of the budget kept back for evaluation and the report."""
    steps: int | None = None
    """Training steps; none: as many as fit the budget, measured by a calibration run."""
    train_minutes: float | None = None
    """At most this much training time; none: what the budget leaves."""
    calibration_steps: int = 12
    """Throwaway training steps that measure the seconds per step on this machine."""
    calibration_skip: int = 4
    """Calibration steps left out of the timing (the first ones warm up caches and kernels)."""
    model: tuple[str, ...] = field(default=(), metadata=option(overrides=True))
    """Policy config overrides for training, from `--set model.<PolicyConfig field>=...`."""
    train: tuple[str, ...] = field(default=(), metadata=option(overrides=True))
    """Training loop overrides, from `--set train.<TrainConfig field>=...`."""


def run(cfg: QuickstartConfig) -> int:
    """Check `cfg`, run every stage, print where the report is; returns 0."""
    check(cfg)
    report = Quickstart(cfg).run()
    print(f"\nreport: {report.resolve()}")
    return 0


def check(cfg: QuickstartConfig) -> None:
    """Everything that can be checked before the first stage."""
    from vlaforge.envs.registry import get_simulator
    from vlaforge.models.presets import get_preset
    from vlaforge.train.config import TrainConfig

    sim = get_simulator(cfg.simulator)
    sim.resolve_tasks(cfg.tasks)
    sim.check_cameras(cameras_of(cfg) or sim.default_cameras)
    apply_overrides(get_preset(cfg.preset), list(cfg.model))  # a bad key fails now, not after collection
    apply_overrides(TrainConfig(), list(cfg.train))
    if cfg.budget_minutes <= 0:
        raise VlaforgeError(f"--budget-minutes must be positive, got {cfg.budget_minutes}")
    for name in ("episodes_per_task", "eval_episodes", "batch_size", "workers", "max_steps", "image_size"):
        if getattr(cfg, name) < 1:
            raise VlaforgeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.videos_per_task < 0:
        raise VlaforgeError(f"--videos-per-task must be >= 0, got {cfg.videos_per_task}")
    if cfg.steps is not None and cfg.steps < 1:
        raise VlaforgeError(f"--steps must be at least 1, got {cfg.steps}")
    if cfg.train_minutes is not None and cfg.train_minutes <= 0:
        raise VlaforgeError(f"--train-minutes must be positive, got {cfg.train_minutes}")
    if not 1 <= cfg.calibration_skip <= cfg.calibration_steps - 2:
        raise VlaforgeError(
            f"--calibration-skip must be between 1 and --calibration-steps - 2, got {cfg.calibration_skip}"
        )


def _say(command: str, cfg: Any, positional: tuple[str, ...] = ()) -> None:
    """Print the command line that reproduces a stage."""
    print(f"$ vlaforge {command} " + " ".join(shlex.quote(a) for a in to_argv(cfg, positional)), flush=True)


class Quickstart:
    """Runs the stages in order and keeps the time each took."""

    def __init__(self, cfg: QuickstartConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}
        self.reused: list[str] = []
        self.steps = 0
        self.seconds_per_step: float | None = None

    @property
    def left(self) -> float:
        return self.cfg.budget_minutes * 60 - (time.perf_counter() - self.start)

    def run(self) -> Path:
        self._stage("collect", self.collect)
        self._stage("train", self.train)
        self._stage("eval", self.evaluate)
        return self._stage("report", self.report)

    def _stage(self, name: str, fn):
        t = time.perf_counter()
        print(f"\n== {name} ({self.left / 60:.1f} min of the budget left)", flush=True)
        result = fn()
        self.times[name] = time.perf_counter() - t
        return result

    # -- collect -------------------------------------------------------------------------------------
    def collect(self) -> None:
        from vlaforge.data.collect import CollectConfig
        from vlaforge.data.collect import run as collect

        data = self.out / "data"
        if (data / "meta" / "info.json").exists() and _collect_finished(data):
            print(f"reusing the finished dataset {data}")
            self.reused.append("collect")
            return
        c = self.cfg
        cfg = CollectConfig(
            tasks=c.tasks, out=str(data), simulator=c.simulator, episodes_per_task=c.episodes_per_task,
            image_size=c.image_size, workers=c.workers, cameras=c.cameras,
        )  # fmt: skip
        _say("collect", cfg, ("simulator",))
        collect(cfg)

    # -- train ---------------------------------------------------------------------------------------
    def train_command(self, steps: int, out: Path, minutes: float = 0.0, **loop: Any):
        """The `vlaforge train` of this quickstart: `steps` into `out` with a `minutes` deadline."""
        from vlaforge.train.command import TrainCommand
        from vlaforge.train.config import TrainConfig

        base = TrainConfig(
            steps=steps, batch_size=self.cfg.batch_size, val_every=250, save_every=max(50, (steps + 3) // 4),
            tensorboard=False, max_minutes=round(minutes, 2),
        )  # fmt: skip
        loop_cfg = apply_overrides(base, [*self.cfg.train, *([loop] if loop else [])])
        return TrainCommand(
            data=(str(self.out / "data"),), out=str(out), device=self.cfg.device, preset=self.cfg.preset,
            train=loop_cfg, model=(f"image_size={self.cfg.image_size}", *self._camera_override(), *self.cfg.model),
        )  # fmt: skip

    def clocked_command(self, expected: int, out: Path, seconds: float):
        """The training of a calibrated run: the clock decides, not the estimate (a few calibration
        steps misjudge a shared machine either way). The run may take up to CLOCK_HEADROOM times the
        `expected` steps in `seconds`, and its lr reaches the minimum when the time is up
        (`train.lr_follows_clock`); checkpoints every quarter of the expected steps."""
        minutes = max(0.0, seconds / 60)
        clocked = round(minutes, 2) > 0  # else the budget is spent: the expected steps, no deadline
        return self.train_command(
            CLOCK_HEADROOM * expected if clocked else expected, out, minutes=minutes,
            lr_follows_clock=clocked, save_every=max(50, (expected + 3) // 4),
        )  # fmt: skip

    def _camera_override(self) -> tuple[str, ...]:
        """`cameras=[...]` for the policy when the quickstart was given its cameras."""
        cams = cameras_of(self.cfg)
        return (f"cameras=[{','.join(cams)}]",) if cams else ()

    def _settings(self) -> dict:
        """What decides the trained policy (a finished run with the same settings is reused)."""
        keys = ("tasks", "simulator", "episodes_per_task", "image_size", "preset", "batch_size", "steps")
        return {
            **{k: getattr(self.cfg, k) for k in keys},
            # only when given, so that a run made before the option still matches
            **({"cameras": self.cfg.cameras} if self.cfg.cameras else {}),
            "model": list(self.cfg.model),
            "train": list(self.cfg.train),
        }

    def train(self) -> None:
        from vlaforge.train.command import TrainCommand, run_train

        run_dir, marker = self.out / "run", self.out / "run" / TRAIN_MARKER
        state = json.loads(marker.read_text()) if marker.exists() else {}
        if state.get("settings") == self._settings() and (run_dir / "checkpoints" / "last").exists():
            self.steps = state["steps"]
            if state.get("finished"):
                print(f"reusing the finished training run {run_dir}")
                self.reused.append("train")
                return
            cmd = TrainCommand(resume=str(run_dir), device=self.cfg.device)
            _say("train", cmd)
            run_train(cmd)
            return self._finished(marker, state)
        if run_dir.exists():
            shutil.rmtree(run_dir)  # settings changed, or nothing was saved: start over
        budget = self._train_budget()
        if self.cfg.steps is None:
            self.seconds_per_step = self._calibrate()
            budget = self._train_budget()
            self.steps = max(50, int(budget / self.seconds_per_step))
            print(
                f"{self.seconds_per_step * 1000:.0f} ms per step here: "
                f"~{self.steps} steps fit; training until the clock runs out (~{budget / 60:.1f} min)"
            )
            cmd = self.clocked_command(self.steps, run_dir, budget)
        else:
            self.steps = self.cfg.steps
            cmd = self.train_command(self.steps, run_dir, minutes=max(0.0, 1.05 * budget / 60))
        state = {"settings": self._settings(), "steps": self.steps, "finished": False}
        run_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(state, indent=2) + "\n")
        _say("train", cmd)
        run_train(cmd)
        self._finished(marker, state)

    def _finished(self, marker: Path, state: dict) -> None:
        marker.write_text(json.dumps({**state, "finished": True}, indent=2) + "\n")

    def _train_budget(self) -> float:
        """Seconds of training: what the budget leaves after the evaluation reserve, at most
        --train-minutes (0 or less when the budget is spent: then the 50-step floor applies)."""
        budget = self.left - self.cfg.eval_reserve_s
        if self.cfg.train_minutes is not None:
            budget = min(budget, self.cfg.train_minutes * 60)
        return budget

    def _calibrate(self) -> float:
        """Seconds per optimizer step on this machine, from a throwaway run of a few steps."""
        from vlaforge.train.command import run_train

        steps, skip = self.cfg.calibration_steps, self.cfg.calibration_skip
        print(f"calibrating: {steps} throwaway steps to fit the training to the budget", flush=True)
        stamps: list[float] = []
        with tempfile.TemporaryDirectory(prefix="vlaforge-calibrate-") as tmp:
            cmd = self.train_command(
                steps, Path(tmp) / "run", val_fraction=0.0, ema_decay=0.0, save_every=steps
            )
            run_train(cmd, on_step=lambda _t: stamps.append(time.perf_counter()))
        return (stamps[-1] - stamps[skip - 1]) / (len(stamps) - skip)

    # -- eval and report -----------------------------------------------------------------------------
    def evaluate(self) -> None:
        from vlaforge.eval.command import run as evaluate
        from vlaforge.eval.config import EvalConfig

        c = self.cfg
        cfg = EvalConfig(
            policy=str(self.out / "run" / "checkpoints" / "last"), suite=c.tasks, out=str(self.out / "eval"),
            simulator=c.simulator, episodes_per_task=c.eval_episodes, workers=c.workers, device=c.device,
            videos_per_task=c.videos_per_task, max_steps=c.max_steps, overwrite=True,
        )  # fmt: skip
        _say("eval", cfg)
        if evaluate(cfg) == 130:
            raise KeyboardInterrupt

    def report(self) -> Path:
        from vlaforge.eval.report import render_html
        from vlaforge.train.log import read_log

        info = json.loads((self.out / "eval" / "eval_info.json").read_text())
        log = read_log(self.out / "run", missing_ok=True)
        extra = training_section(log, self.times, self.steps, self.cfg)
        path = self.out / "report.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(render_html(info, title="vlaforge quickstart", extra=extra, media_prefix="eval/"))
        tmp.replace(path)
        overall = info.get("overall", {})
        print(
            f"success: {_fmt(overall)} over {len(info['tasks'])} tasks x {info['episodes_per_task']} episodes"
        )
        total = time.perf_counter() - self.start
        print(
            f"total {total / 60:.1f} min: "
            + ", ".join(f"{k} {v / 60:.1f} min" for k, v in self.times.items())
        )
        self._summary(log, overall, total)
        return path

    def _summary(self, log: list[dict], overall: dict, total: float) -> None:
        trained = max((r["step"] for r in log if "loss" in r), default=0)
        summary = {
            "config": to_dict(self.cfg), "seconds": {k: round(v, 1) for k, v in self.times.items()},
            "total_seconds": round(total, 1), "reused": self.reused, "steps_planned": self.steps,
            "steps_trained": trained, "seconds_per_step": self.seconds_per_step, "overall": overall,
        }  # fmt: skip
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _fmt(overall: dict) -> str:
    value = overall.get("success_rate_task_mean")
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _collect_finished(data: Path) -> bool:
    sidecar = data / "meta" / "vlaforge_collect.json"
    return not sidecar.exists() or bool(json.loads(sidecar.read_text()).get("complete", True))


def training_section(log: list[dict], times: dict[str, float], steps: int, cfg: QuickstartConfig) -> str:
    """HTML: how the policy was made (data, preset, steps, time per stage) and its loss curve."""
    stages = " · ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
    facts = (
        f'<p class="meta">{cfg.episodes_per_task} demonstrations per task at {cfg.image_size} px · preset '
        f"<code>{cfg.preset}</code> · {steps} steps of batch {cfg.batch_size} · {stages}</p>"
    )
    return f"<h2>Training</h2>{facts}{loss_curve_svg(log)}"


def loss_curve_svg(log: list[dict], width: int = 640, height: int = 220) -> str:
    """Training loss (and validation loss where logged) against step, log-scaled, as inline SVG."""
    import math

    train = [(r["step"], r["loss"]) for r in log if "loss" in r and r.get("loss", 0) > 0]
    val = [(r["step"], r["val_loss"]) for r in log if r.get("val_loss", 0) and r["val_loss"] > 0]
    if len(train) < 2:
        return "<p>No loss curve (fewer than two logged steps).</p>"
    xs = [s for s, _ in train + val]
    ys = [math.log10(v) for _, v in train + val]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys) + 1e-9
    pad = 40

    def pt(s: float, v: float) -> str:
        x = pad + (s - x0) / max(1, x1 - x0) * (width - 2 * pad)
        y = height - pad - (math.log10(v) - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    lines = f'<polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="{" ".join(pt(s, v) for s, v in train)}"/>'
    if val:
        lines += f'<polyline fill="none" stroke="#c05621" stroke-width="2" points="{" ".join(pt(s, v) for s, v in val)}"/>'
    labels = (
        f'<text x="{pad}" y="{pad - 10}" font-size="12">loss (log scale): '
        f'<tspan fill="#2b6cb0">train {train[-1][1]:.3f}</tspan>'
        + (f' · <tspan fill="#c05621">validation {val[-1][1]:.3f}</tspan>' if val else "")
        + f'</text><text x="{width - pad}" y="{height - 10}" font-size="12" text-anchor="end">step {int(x1)}</text>'
        f'<text x="{pad}" y="{height - 10}" font-size="12">step {int(x0)}</text>'
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">{lines}{labels}</svg>'
