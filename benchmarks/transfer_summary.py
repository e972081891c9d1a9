"""Summarise `benchmarks/transfer.sh`: success per point (target, demos, mode), JSON and an HTML page.

    python benchmarks/transfer_summary.py OUT benchmarks/results/transfer.json --html docs/transfer.html

A point is OUT/runs/<target><demos>-<mode> with its evaluation in OUT/eval/<same name>; targets are
`mw` (Meta-World ML45-test, 5 tasks) and `ur` (robosuite UR5e on Lift); modes scratch, full,
frozen, lora. The page draws success against demonstrations, pretrained (full) vs scratch, per target
as inline SVG (no plotting library), and lists every point with its wall-clock.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mt10_summary import eval_summary, train_summary  # noqa: E402

TARGETS = {"mw": "Meta-World ML45-test (5 tasks)", "ur": "robosuite UR5e Lift (held-out arm)"}
MODES = ("scratch", "full", "frozen", "lora")
COLOURS = {"scratch": "#888888", "full": "#1f6feb", "frozen": "#2da44e", "lora": "#bf8700"}
POINT = re.compile(r"^(mw|ur)(\d+)-(scratch|full|frozen|lora)$")


def collect_points(out: Path) -> list[dict]:
    points = []
    for run in sorted((out / "runs").iterdir()):
        m = POINT.match(run.name)
        ev = out / "eval" / run.name
        if not m or not (ev / "eval_info.json").is_file():
            continue
        target, demos, mode = m.group(1), int(m.group(2)), m.group(3)
        e, t = eval_summary(ev), train_summary(run)
        wall = run / "wall_s"
        points.append(
            {
                "point": run.name,
                "target": target,
                "demos_per_task": demos,
                "mode": mode,
                "success": e["mean_over_tasks"],
                "per_task": e["per_task"],
                "episodes_per_task": e["episodes_per_task"],
                "steps": t["steps"],
                "train_minutes": t["train_minutes"],
                "wall_minutes": round(int(wall.read_text()) / 60, 1) if wall.is_file() else None,
                "median_samples_per_s": t["median_samples_per_s"],
                "final_train_loss": t["final_train_loss"],
                "eval_wall_s": e["eval_wall_s"],
            }
        )
    return points


def pretrain_info(out: Path) -> dict | None:
    import os

    home = Path(os.environ.get("VLAFORGE_HOME") or out / "home")
    path = home / "pretrained" / "base" / "recipe.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    run = Path(info["run"])
    t = train_summary(run) if (run / "log.jsonl").is_file() else {}
    return {
        "tier": info["tier"],
        "step": info["step"],
        "collect_minutes": info.get("collect_minutes"),
        "train_minutes": t.get("train_minutes", info.get("train_minutes")),
        "median_samples_per_s": t.get("median_samples_per_s"),
        "final_train_loss": t.get("final_train_loss"),
        "datasets": info["datasets"],
    }


def svg_curve(points: list[dict], target: str, width: int = 420, height: int = 260) -> str:
    """Success (%) against demonstrations per task, one polyline per mode, log-spaced x."""
    import math

    rows = [p for p in points if p["target"] == target]
    demos = sorted({p["demos_per_task"] for p in rows})
    if not demos:
        return ""
    pad = 40
    lo, hi = math.log(min(demos)), math.log(max(demos))

    def x(n: int) -> float:
        return pad + (0.5 if hi == lo else (math.log(n) - lo) / (hi - lo)) * (width - 2 * pad)

    def y(s: float) -> float:
        return height - pad - s * (height - 2 * pad)

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="11">']
    parts.append(f'<text x="{pad}" y="16">{html.escape(TARGETS[target])}</text>')
    for s in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y(s)}" y2="{y(s)}" stroke="#eee"/>')
        parts.append(f'<text x="4" y="{y(s) + 4}">{int(100 * s)}%</text>')
    for n in demos:
        parts.append(f'<text x="{x(n) - 6}" y="{height - pad + 16}">{n}</text>')
    parts.append(f'<text x="{width / 2 - 50}" y="{height - 6}">demonstrations per task</text>')
    for i, mode in enumerate(MODES):
        line = sorted((p["demos_per_task"], p["success"]) for p in rows if p["mode"] == mode)
        if not line:
            continue
        c = COLOURS[mode]
        if len(line) > 1:
            pts = " ".join(f"{x(n):.1f},{y(s):.1f}" for n, s in line)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        for n, s in line:
            parts.append(f'<circle cx="{x(n):.1f}" cy="{y(s):.1f}" r="4" fill="{c}"/>')
        parts.append(f'<text x="{width - pad - 50}" y="{34 + 14 * i}" fill="{c}">{mode}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_html(summary: dict, path: Path) -> None:
    rows = "\n".join(
        f"<tr><td>{html.escape(TARGETS[p['target']])}</td><td>{p['demos_per_task']}</td><td>{p['mode']}</td>"
        f"<td>{100 * p['success']:.0f}%</td><td>{p['steps']}</td><td>{p['wall_minutes']}</td>"
        f"<td>{p['median_samples_per_s']}</td></tr>"
        for p in summary["points"]
    )
    pre = summary.get("pretrain") or {}
    curves = "\n".join(svg_curve(summary["points"], t) for t in TARGETS)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vlaforge transfer study</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:2px 10px;text-align:left}}</style>
</head><body>
<h1>Transfer: the <code>base</code> generalist fine-tuned vs training from scratch</h1>
<p>{html.escape(summary["protocol"])}</p>
<p>Generalist: {html.escape(json.dumps(pre))}</p>
{curves}
<table><tr><th>target</th><th>demos/task</th><th>mode</th><th>success</th><th>steps</th><th>wall min</th><th>samples/s</th></tr>
{rows}
</table>
<p>Reproduce: <code>{html.escape(summary["command"])}</code>. Generated {summary["created"]}.</p>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("results", type=Path)
    ap.add_argument("--html", type=Path)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    points = collect_points(args.out)
    summary = {
        "command": "bash benchmarks/transfer.sh OUT STEPS DEMOS",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": (
            f"{args.steps} steps of batch 64 at 64 px for every point (scratch and fine-tuned alike); "
            "10 evaluation episodes per task on seeds disjoint from the demonstrations (heldout placements)"
        ),
        "pretrain": pretrain_info(args.out),
        "points": points,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=2) + "\n")
    if args.html:
        write_html(summary, args.html)
    for p in points:
        print(f"{p['point']:<16} success {100 * p['success']:5.1f}%  ({p['wall_minutes']} min)")


if __name__ == "__main__":
    main()
