"""`vlaforge collect metaworld ...`: scripted-expert demonstrations -> a LeRobot v3.0 dataset.

    vlaforge collect metaworld --tasks reach-v3,drawer-open-v3 --episodes-per-task 3 --image-size 64 --out D

Rerunning the same command after an interruption resumes it; a finished dataset is replaced only
with `--overwrite`. Integer options are parsed here (not by argparse) so that a bad value gives the
usual one-line `vlaforge: error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from vlaforge.errors import VlaforgeError, unknown

HELP = "collect scripted demonstrations into a LeRobot v3 dataset"
SOURCES = ("metaworld",)
MAX_IMAGE_SIZE = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="SOURCE", help="where demonstrations come from: metaworld (scripted experts)"
    )
    parser.add_argument(
        "--tasks",
        metavar="LIST",
        required=True,
        help="task names (with or without -v3), mt10, mt50, easy, medium, hard, very_hard, ml45-train, ml45-test; comma-separated",
    )
    parser.add_argument(
        "--episodes-per-task", metavar="N", default="10", help="successful episodes per task (default 10)"
    )
    parser.add_argument(
        "--cameras",
        metavar="LIST",
        default="corner2",
        help="comma-separated cameras (default corner2, oriented as LeRobot)",
    )
    parser.add_argument(
        "--image-size",
        metavar="PX",
        default="128",
        help="square image side in pixels, even, 16..1024 (default 128)",
    )
    parser.add_argument(
        "--seed", metavar="N", default="0", help="base seed; each episode's env seed is recorded (default 0)"
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        default=str(min(os.cpu_count() or 1, 8)),
        help="worker processes that simulate and render; 0 = in this process (default: CPU count, at most 8)",
    )
    parser.add_argument(
        "--steps-after-success",
        metavar="N",
        default="10",
        help="frames kept after the first success (default 10)",
    )
    parser.add_argument(
        "--max-attempts",
        metavar="K",
        default="5",
        help="attempts allowed per task, as a multiple of --episodes-per-task (default 5)",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="output dataset directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _int(value: str, flag: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise VlaforgeError(f"{flag} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise VlaforgeError(f"{flag} must be {bound}, got {number}")
    return number


def image_size(value: str) -> int:
    """A valid square image side: an even integer in [16, MAX_IMAGE_SIZE] (the video encoder needs even sides)."""
    size = _int(value, "--image-size", 16, MAX_IMAGE_SIZE)
    if size % 2:
        raise VlaforgeError(f"--image-size must be even (video encoding needs it), got {size}")
    return size


def cameras(value: str) -> tuple[str, ...]:
    from vlaforge.envs.metaworld import CAMERAS

    names = tuple(dict.fromkeys(c.strip() for c in value.split(",") if c.strip()))
    if not names:
        raise VlaforgeError("--cameras is empty; choose from: " + ", ".join(CAMERAS))
    for name in names:
        if name not in CAMERAS:
            raise unknown("camera", name, CAMERAS)
    return names


def build_config(args: argparse.Namespace):  # -> CollectConfig (import kept lazy)
    from vlaforge.data.collect import CollectConfig
    from vlaforge.envs.tasks import resolve_tasks

    if args.source not in SOURCES:
        raise unknown("collect source", args.source, SOURCES)
    return CollectConfig(
        tasks=tuple(resolve_tasks(args.tasks)),
        episodes_per_task=_int(args.episodes_per_task, "--episodes-per-task", 1),
        cameras=cameras(args.cameras),
        image_size=image_size(args.image_size),
        seed=_int(args.seed, "--seed", 0, 2**31 - 1),
        steps_after_success=_int(args.steps_after_success, "--steps-after-success", 0),
        max_attempts=_int(args.max_attempts, "--max-attempts", 1),
    )


def run(args: argparse.Namespace) -> int:
    from vlaforge.data.collect import collect

    cfg = build_config(args)
    workers = _int(args.workers, "--workers", 0, 256)
    show = False if args.no_progress else None
    summary = collect(cfg, args.out, workers=workers, overwrite=args.overwrite, progress_bar=show)
    _report(summary, cfg.episodes_per_task)
    return 0


def _report(summary, target: int) -> None:  # summary: CollectSummary
    width = max(len(t) for t in summary.per_task)
    print("expert success rate per task (successes / attempts):")
    for task, s in summary.per_task.items():
        rate = f"{100 * s['success_rate']:.0f}%" if s["success_rate"] is not None else "n/a"
        print(f"  {task:<{width}}  {s['episodes']}/{s['attempts']}  {rate}")
    fps = summary.new_frames / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"dataset {summary.root}: {summary.episodes} episodes, {summary.frames} frames"
        f" ({summary.new_frames} frames written in {summary.seconds:.1f} s this run, {fps:.0f} frames/s)"
    )
    short = summary.short_tasks(target)
    if short:
        print(f"vlaforge: warning: fewer than {target} episodes for: {', '.join(short)}", file=sys.stderr)
