"""`vlaforge quickstart`: collect -> train -> evaluate -> report, on a laptop CPU, in one command.

The stages are the public commands a user would type (`vlaforge collect`, `vlaforge train`,
`vlaforge eval`), run in this process with settings chosen for a small CPU; each is printed as the
command line that reproduces it. The training length is fitted to the time budget: a few calibration
steps measure this machine's speed, and the run gets the steps that fit what the budget leaves after
collection and a reserve for evaluation. Rerunning with the same `--out` reuses a finished dataset.

    out/data/         the LeRobot v3 dataset (scripted expert demonstrations)
    out/run/          the training run (checkpoints/last is a servable policy, log.jsonl)
    out/eval/         eval_info.json, report.html and videos on held-out seeds
    out/report.html   one page: success table and chart, loss curve, rollout videos
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vlaforge.errors import VlaforgeError

HELP = "collect, train, evaluate and report in one go"

# Easy tasks whose target object is large in the corner2 view at 64 px (a 1,500-step multi-task run
# measured 100%, 100% and 90% on them; reach, whose goal marker is ~1 px at 64 px, reached 10%).
DEFAULT_TASKS = "drawer-close-v3,door-open-v3,handle-press-v3"


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart does; every field is a command-line option."""

    out: Path
    tasks: str = DEFAULT_TASKS  # anything `--tasks` of `vlaforge collect` takes
    budget_minutes: float = 15.0  # wall time for the whole job, report included
    episodes_per_task: int = 20  # successful demonstrations per task
    eval_episodes: int = 10  # evaluation episodes per task, on seeds disjoint from the demos
    image_size: int = 64  # collection and policy resolution
    preset: str = "default"  # model preset (`vlaforge presets`)
    batch_size: int = 64
    workers: int = 2  # simulation processes for collection and evaluation
    eval_reserve_s: float = 150.0  # time kept back for evaluation and the report
    max_steps: int = 500  # evaluation step limit per episode (Meta-World's 500)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="quickstart", help="output directory (default ./quickstart)")
    parser.add_argument(
        "--tasks", default=DEFAULT_TASKS, help=f"Meta-World tasks or a suite (default {DEFAULT_TASKS})"
    )
    parser.add_argument("--budget-minutes", type=float, default=15.0, help="total wall time (default 15)")
    parser.add_argument(
        "--episodes-per-task", type=int, default=20, help="demonstrations per task (default 20)"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=10, help="evaluation episodes per task (default 10)"
    )
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--preset", default="default", help="model preset (default: the CPU default)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="simulation processes (default 2)")
    parser.add_argument(
        "--max-steps", type=int, default=500, help="evaluation step limit per episode (default 500)"
    )


def run(args: argparse.Namespace) -> int:
    cfg = QuickstartConfig(
        out=Path(args.out), tasks=args.tasks, budget_minutes=args.budget_minutes,
        episodes_per_task=args.episodes_per_task, eval_episodes=args.eval_episodes,
        image_size=args.image_size, preset=args.preset, batch_size=args.batch_size, workers=args.workers,
        max_steps=args.max_steps,
    )  # fmt: skip
    _check(cfg)
    report = Quickstart(cfg).run()
    print(f"\nreport: {report.resolve()}")
    return 0


def _check(cfg: QuickstartConfig) -> None:
    from vlaforge.envs.tasks import resolve_tasks
    from vlaforge.models.presets import get_preset

    resolve_tasks(cfg.tasks)
    get_preset(cfg.preset)
    if cfg.budget_minutes <= 0:
        raise VlaforgeError(f"--budget-minutes must be positive, got {cfg.budget_minutes}")
    for name in ("episodes_per_task", "eval_episodes", "batch_size", "workers", "max_steps"):
        if getattr(cfg, name) < 1:
            raise VlaforgeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")


class Quickstart:
    """Runs the stages in order and keeps the time each took."""

    def __init__(self, cfg: QuickstartConfig):
        self.cfg = cfg
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}
        self.steps = 0

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

    # -- stages --------------------------------------------------------------------------------------
    def collect(self) -> None:
        data = self.cfg.out / "data"
        if (data / "meta" / "info.json").exists() and _collect_finished(data):
            print(f"reusing the finished dataset {data}")
            return
        _command([
            "collect", "metaworld", "--tasks", self.cfg.tasks, "--episodes-per-task", str(self.cfg.episodes_per_task),
            "--image-size", str(self.cfg.image_size), "--workers", str(self.cfg.workers), "--out", str(data),
        ])  # fmt: skip

    def train(self) -> None:
        run_dir = self.cfg.out / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a quickstart run is cheap to redo; a half-trained one is not reused
        seconds_per_step = self._calibrate()
        budget = self.left - self.cfg.eval_reserve_s
        self.steps = max(50, int(budget / seconds_per_step))
        print(
            f"{seconds_per_step * 1000:.0f} ms per step here: training {self.steps} steps (~{budget / 60:.1f} min)"
        )
        _command(self._train_args(run_dir, self.steps, minutes=1.05 * budget / 60))

    def _train_overrides(self, steps: int, minutes: float = 0.0) -> list[str]:
        """`minutes`: the trainer's own deadline (a safety net should this machine slow down)."""
        return [
            f"train.steps={steps}", f"train.batch_size={self.cfg.batch_size}", f"model.image_size={self.cfg.image_size}",
            "train.val_every=250", f"train.save_every={steps}", "train.tensorboard=false",
        ] + ([f"train.max_minutes={minutes:.2f}"] if minutes > 0 else [])  # fmt: skip

    def _train_args(self, run_dir: Path, steps: int, minutes: float = 0.0) -> list[str]:
        sets = [a for o in self._train_overrides(steps, minutes) for a in ("--set", o)]
        return [
            "train",
            "--preset",
            self.cfg.preset,
            "--data",
            str(self.cfg.out / "data"),
            "--out",
            str(run_dir),
            *sets,
        ]

    def _calibrate(self, steps: int = 12, skip: int = 4) -> float:
        """Seconds per optimizer step on this machine, from a throwaway run of a few steps."""
        from vlaforge.train.setup import execute

        print(f"calibrating: {steps} throwaway steps to fit the training to the budget", flush=True)
        overrides = self._train_overrides(steps) + ["train.val_fraction=0", "train.ema_decay=0"]
        spec = {
            "command": "train",
            "data": [str(self.cfg.out / "data")],
            "overrides": overrides,
            "preset": self.cfg.preset,
        }
        stamps: list[float] = []
        with tempfile.TemporaryDirectory(prefix="vlaforge-calibrate-") as tmp:
            execute(spec, Path(tmp) / "run", False, on_step=lambda _t: stamps.append(time.perf_counter()))
        return (stamps[-1] - stamps[skip - 1]) / (len(stamps) - skip)

    def evaluate(self) -> None:
        _command([
            "eval", "--policy", str(self.cfg.out / "run" / "checkpoints" / "last"), "--suite", self.cfg.tasks,
            "--episodes-per-task", str(self.cfg.eval_episodes), "--workers", str(self.cfg.workers),
            "--out", str(self.cfg.out / "eval"), "--overwrite", "--max-steps", str(self.cfg.max_steps),
        ])  # fmt: skip

    def report(self) -> Path:
        from vlaforge.eval.report import render_html

        info = json.loads((self.cfg.out / "eval" / "eval_info.json").read_text())
        log = _read_log(self.cfg.out / "run" / "log.jsonl")
        extra = training_section(log, self.times, self.steps, self.cfg)
        path = self.cfg.out / "report.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(render_html(info, title="vlaforge quickstart", extra=extra, media_prefix="eval/"))
        tmp.replace(path)
        overall = info.get("overall", {})
        print(
            f"success: {_fmt(overall)} over {len(info['tasks'])} tasks x {info['episodes_per_task']} episodes"
        )
        print(
            f"total {(time.perf_counter() - self.start) / 60:.1f} min: "
            + ", ".join(f"{k} {v / 60:.1f} min" for k, v in self.times.items())
        )
        return path


def _fmt(overall: dict) -> str:
    value = overall.get("success_rate_task_mean")
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _command(argv: list[str]) -> None:
    """Run one vlaforge command in this process, printing the line that reproduces it."""
    from vlaforge.cli import main

    print("$ vlaforge " + " ".join(shlex.quote(a) for a in argv), flush=True)
    code = main(argv)
    if code:
        raise VlaforgeError(f"`vlaforge {argv[0]}` failed (exit {code}); see the message above")


def _collect_finished(data: Path) -> bool:
    sidecar = data / "meta" / "vlaforge_collect.json"
    return not sidecar.exists() or bool(json.loads(sidecar.read_text()).get("complete", True))


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
