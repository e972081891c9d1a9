"""What an evaluation writes: `eval_info.json`, a terminal table and a self-contained HTML report.

The HTML file needs nothing but a browser: CSS and the success chart (SVG) are inline; the videos are
linked relatively (`videos/<task>/episode_000.mp4`), so the output directory can be moved or zipped as
a whole. Everything is escaped; nothing is fetched from the network.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

from vlaforge.eval.metrics import summarize

TIMING_KEYS = (
    "wall_time_s",
    "env_steps",
    "env_steps_per_s",
    "rollout_time_s",
    "rollout_steps_per_s",
    "policy_calls",
    "policy_time_s",
    "torch_threads",
)
GROUP_COLORS = {
    "easy": "#2e9d5b",
    "medium": "#d9a21b",
    "hard": "#d9642b",
    "very_hard": "#c0392b",
    "other": "#607d8b",
}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Atomic JSON write: a temporary file, then rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- eval_info.json --------------------------------------------------------------------------------
def build_info(spec: Any, sim: Any, cfg: Any, tasks: list[str], run: dict) -> dict:
    """The eval_info.json record: per task / group / overall metrics plus how they were obtained.

    `spec` is the policy's `PolicySpec`, `sim` the `SimulatorSpec`, `cfg` the run's `EvalConfig`,
    `run` what `vlaforge.eval.runner.evaluate` returned.
    """
    summary = summarize(run["results"], tasks, sim.group)
    for task, m in summary["per_task"].items():
        m["instruction"] = sim.instructions.get(task, "")
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": spec.name,
        "simulator": sim.name,
        "suite": cfg.suite or ",".join(tasks),
        "tasks": list(tasks),
        "episodes_per_task": cfg.episodes_per_task,
        "seed": cfg.seed,
        "execution": {
            "mode": cfg.execution,
            "execute_steps": run["execute_steps"] if cfg.execution in ("receding", "rtc") else 1,
            "chunk": int(spec.chunk),
            "history": int(spec.history),
            "ensemble_coeff": cfg.ensemble_coeff if cfg.execution == "ensemble" else None,
            "inference_delay_ms": cfg.inference_delay_ms,
            "delay_steps": run.get("delay_steps", 0),
            "rtc_max_guidance": cfg.rtc_max_guidance if cfg.execution == "rtc" else None,
        },
        "env": run["env"],
        **summary,
        "timing": {k: run[k] for k in TIMING_KEYS},
        "robustness": {
            "retries": run["retries"],
            "worker_restarts": run["worker_restarts"],
            "workers": cfg.workers,
        },
        "interrupted": run["interrupted"],
        "error": run.get("error"),
        "train_seeds": run["train_seeds"],
        "episodes": [
            r.to_dict() for r in sorted(run["results"], key=lambda r: (tasks.index(r.task), r.episode))
        ],
        "decode_stats": run.get("decode_stats"),  # autoregressive heads: chunks decoded, decodes repaired
    }


# -- terminal -----------------------------------------------------------------------------------------
def format_table(info: dict) -> str:
    """A plain-text table: one row per task, then the group means and the overall figures."""
    rows = [("task", "group", "success", "episodes", "mean len")]
    for task, m in info["per_task"].items():
        rows.append(
            (task, m["difficulty"], _pct(m["success_rate"]), str(m["episodes"]), _fmt_len(m["mean_length"]))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    line = lambda r: "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
    )
    out = [line(rows[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in rows[1:]]
    out.append("")
    for group, g in info["per_group"].items():
        out.append(f"{group:<10} {_pct(g['success_rate']):>7}  ({g['tasks']} tasks)")
    o = info["overall"]
    out.append(
        f"overall    {_pct(o['success_rate']):>7}  (mean of group means; mean over tasks {_pct(o['success_rate_task_mean'])})"
    )
    out.append(_footer(info))
    return "\n".join(out)


def _fmt_len(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _footer(info: dict) -> str:
    t = info["timing"]
    parts = [
        f"{t['env_steps']} env steps in {t['wall_time_s']:.1f} s ({t['env_steps_per_s'] or 0:.0f} steps/s)"
    ]
    if info["robustness"]["retries"]:
        parts.append(f"{info['robustness']['retries']} episode(s) retried after worker crashes")
    failed = [e for e in info.get("episodes", []) if e.get("error")]
    if failed:
        parts.append(f"{len(failed)} episode(s) failed by policy errors (first: {failed[0]['error']})")
    env = info.get("env") or {}
    if env.get("protocol"):
        trained = env.get("training_protocol")
        parts.append(
            f"protocol {env['protocol']}"
            + (f" (training data: {trained})" if trained and trained != env["protocol"] else "")
        )
    seeds = info["train_seeds"]
    if seeds["status"] == "unknown":
        parts.append(f"training seeds unknown ({seeds['source']}): disjointness not checked")
    elif seeds["status"] == "overlap-allowed":
        parts.append(f"{len(seeds['overlap'])} eval (task, seed) pairs were also training episodes")
    if info["interrupted"]:
        parts.append("INTERRUPTED: partial results")
    if info.get("error"):
        parts.append(f"STOPPED BY AN ERROR ({info['error']['message']}): partial results")
    return "; ".join(parts)


# -- HTML ------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:.92em} .warn{background:#fff3cd;border:1px solid #e0c36b;padding:8px 12px;border-radius:6px}
.cards{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:120px}
.card .v{font-size:1.7em;font-weight:600} .card .l{color:#666;font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.92em} th,td{padding:5px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} th{background:#f6f6f6}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:.8em}
.videos{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:16px}
.vid{border:1px solid #ddd;border-radius:8px;padding:8px} .vid video{width:100%;border-radius:4px;background:#000}
.vid .t{font-weight:600} .vid .i{color:#555;font-size:.88em;margin:2px 0 6px} .ok{color:#2e7d32} .fail{color:#c62828}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pill(group: str) -> str:
    return f'<span class="pill" style="background:{GROUP_COLORS.get(group, "#607d8b")}">{_esc(group)}</span>'


def success_chart_svg(per_task: dict, per_group: dict) -> str:
    """Horizontal bars: each task's success rate coloured by group, then each group mean."""
    rows = [(t, m["success_rate"], m["difficulty"]) for t, m in per_task.items()]
    rows += [(f"mean: {g}", m["success_rate"], g) for g, m in per_group.items()]
    label_w, bar_w, row_h = 230, 560, 20
    height = row_h * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" height="{height}" role="img" aria-label="success rate per task">'
    ]
    for x in (0, 0.25, 0.5, 0.75, 1.0):
        px = label_w + x * bar_w
        parts.append(f'<line x1="{px}" y1="0" x2="{px}" y2="{height - 20}" stroke="#e3e3e3"/>')
        parts.append(
            f'<text x="{px}" y="{height - 6}" font-size="11" text-anchor="middle" fill="#666">{int(x * 100)}%</text>'
        )
    for i, (name, rate, group) in enumerate(rows):
        y = i * row_h + 4
        w = (rate or 0) * bar_w
        bold = ' font-weight="600"' if name.startswith("mean: ") else ""
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 12}" font-size="12" text-anchor="end"{bold}>{_esc(name)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 6}" rx="2" fill="{GROUP_COLORS.get(group, "#607d8b")}"/>'
        )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 12}" font-size="11" fill="#333">{_pct(rate)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _summary_cards(info: dict) -> str:
    o, t = info["overall"], info["timing"]
    cards = [
        (_pct(o["success_rate"]), "success (mean of group means)"),
        (_pct(o["success_rate_task_mean"]), "success (mean over tasks)"),
        (f"{o['successes']}/{o['episodes']}", "successful episodes"),
        (f"{t['env_steps_per_s'] or 0:.0f}", "env steps/s"),
        (f"{t['wall_time_s']:.0f} s", "wall time"),
    ]
    body = "".join(
        f'<div class="card"><div class="v">{_esc(v)}</div><div class="l">{_esc(label)}</div></div>'
        for v, label in cards
    )
    return f'<div class="cards">{body}</div>'


def _task_table(info: dict) -> str:
    head = "<tr><th>task</th><th>group</th><th>instruction</th><th>success</th><th>episodes</th><th>mean length</th><th>retries</th></tr>"
    rows = [
        f"<tr><td>{_esc(t)}</td><td>{_pill(m['difficulty'])}</td><td>{_esc(m.get('instruction', ''))}</td>"
        f'<td class="n">{_pct(m["success_rate"])}</td><td class="n">{m["successes"]}/{m["episodes"]}</td>'
        f'<td class="n">{_fmt_len(m["mean_length"])}</td><td class="n">{m["retries"]}</td></tr>'
        for t, m in info["per_task"].items()
    ]
    groups = [
        f'<tr><th colspan="3">{_pill(g)} mean of {m["tasks"]} task(s)</th><th class="n">{_pct(m["success_rate"])}</th><th colspan="3"></th></tr>'
        for g, m in info["per_group"].items()
    ]
    return f"<table>{head}{''.join(rows)}{''.join(groups)}</table>"


def _videos(info: dict, media_prefix: str = "") -> str:
    cards = []
    by_key = {(e["task"], e["episode"]): e for e in info["episodes"]}
    for task, m in info["per_task"].items():
        for ep in (e for e in info["episodes"] if e["task"] == task and e.get("video")):
            e = by_key[(task, ep["episode"])]
            verdict = (
                '<span class="ok">success</span>' if e["success"] else '<span class="fail">failure</span>'
            )
            cards.append(
                f'<div class="vid"><div class="t">{_esc(task)} · episode {e["episode"]} · seed {e["seed"]}</div>'
                f'<div class="i">“{_esc(m.get("instruction", ""))}”</div>'
                f'<video src="{_esc(media_prefix + e["video"])}" controls muted loop preload="metadata"></video>'
                f"<div>{verdict} in {e['length']} steps</div>{_error_line(e)}</div>"
            )
    return f'<div class="videos">{"".join(cards)}</div>' if cards else "<p>No videos recorded.</p>"


def _error_line(episode: dict) -> str:
    return f'<div class="fail">{_esc(episode["error"])}</div>' if episode.get("error") else ""


def _errors(info: dict, limit: int = 20) -> str:
    """The episodes a policy error failed (a remote server's error or timeout), with the reason."""
    failed = [e for e in info.get("episodes", []) if e.get("error")]
    if not failed:
        return ""
    rows = "".join(
        f'<tr><td>{_esc(e["task"])}</td><td class="n">{e["episode"]}</td><td class="n">{e["seed"]}</td>'
        f"<td>{_esc(e['error'])}</td></tr>"
        for e in failed[:limit]
    )
    more = (
        f'<p class="meta">... and {len(failed) - limit} more (eval_info.json)</p>'
        if len(failed) > limit
        else ""
    )
    head = "<tr><th>task</th><th>episode</th><th>seed</th><th>error</th></tr>"
    return f"<h2>Episodes failed by policy errors ({len(failed)})</h2><table>{head}{rows}</table>{more}"


def _meta(info: dict) -> str:
    ex, env, seeds = info["execution"], info["env"], info["train_seeds"]
    lines = [
        f"policy <b>{_esc(info['policy'])}</b> · {_esc(info.get('simulator', 'metaworld'))} suite "
        f"<b>{_esc(info['suite'])}</b> · {info['episodes_per_task']} episodes per task",
        f"execution {_esc(ex['mode'])} (execute {ex['execute_steps']} of {ex['chunk']}) · history {ex['history']} · "
        f"cameras {_esc(', '.join(env['cameras']))} at {env['image_size']} px · step limit {env['max_steps']}"
        + (f" · protocol <b>{_esc(env['protocol'])}</b>" if env.get("protocol") else ""),
        f"training seeds: {_esc(seeds['status'])} ({_esc(seeds['source'])}) · retries {info['robustness']['retries']} · "
        f"worker restarts {info['robustness']['worker_restarts']} · {_esc(info['created'])}",
    ]
    return "".join(f'<p class="meta">{line}</p>' for line in lines)


# Meta-World MT50 success % from the SmolVLA paper (Table 2): easy, medium, hard, very hard, average.
PUBLISHED_MT50 = {
    "Diffusion Policy": (23.1, 10.7, 1.9, 6.1, 10.5),
    "TinyVLA": (77.6, 21.5, 11.4, 15.8, 31.6),
    "pi0 (3.5B, PaliGemma init)": (80.4, 40.9, 36.7, 44.0, 50.5),
    "SmolVLA (0.45B)": (82.5, 41.8, 45.0, 60.0, 57.3),
    "SmolVLA (2.25B)": (87.1, 51.8, 70.0, 64.0, 68.2),
}


def _published(info: dict) -> str:
    """Published MT50 figures next to ours, only when this run covers all 50 tasks."""
    if len(info["per_task"]) != 50 or list(info["per_group"]) != list(GROUP_COLORS)[:4]:
        return ""
    ours = [100 * info["per_group"][g]["success_rate"] for g in list(GROUP_COLORS)[:4]]
    rows = [(f"<b>{_esc(info['policy'])}</b> (this run)", (*ours, 100 * info["overall"]["success_rate"]))]
    rows += [(_esc(name), vals) for name, vals in PUBLISHED_MT50.items()]
    head = (
        "<tr><th>policy</th><th>easy</th><th>medium</th><th>hard</th><th>very hard</th><th>average</th></tr>"
    )
    body = "".join(
        f"<tr><td>{n}</td>" + "".join(f'<td class="n">{v:.1f}</td>' for v in vals) + "</tr>"
        for n, vals in rows
    )
    note = '<p class="meta">Published: SmolVLA paper, Table 2 (50 demos and 10 trials per task; average = mean of the group means).</p>'
    return f"<h2>Compared with published MT50 results</h2><table>{head}{body}</table>{note}"


def render_html(
    info: dict, *, title: str = "vlaforge evaluation", extra: str = "", media_prefix: str = ""
) -> str:
    """The self-contained report page. `extra` is HTML placed after the summary (the quickstart puts
    its training section there); `media_prefix` is prepended to video paths (a page in another folder).
    """
    warn = '<p class="warn">Interrupted: these are partial results.</p>' if info["interrupted"] else ""
    if info.get("error"):
        warn += (
            f'<p class="warn">Stopped by an error ({_esc(info["error"]["message"])}): partial results.</p>'
        )

    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)} · {_esc(info["policy"])}</title>'
        f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>{_meta(info)}{warn}{_summary_cards(info)}{extra}"
        f"<h2>Success rate</h2>{success_chart_svg(info['per_task'], info['per_group'])}"
        f"<h2>Per task</h2>{_task_table(info)}{_published(info)}{_errors(info)}<h2>Videos</h2>{_videos(info, media_prefix)}</body></html>\n"
    )


def write_report(out_dir: str | os.PathLike, info: dict) -> dict[str, Path]:
    """Write eval_info.json and report.html into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval_info.json", "html": out / "report.html"}
    write_json(paths["json"], info)
    _write_text(paths["html"], render_html(info))
    return paths
