"""`vlaforge quickstart` end to end at toy size: collect -> train -> eval -> one report page."""

from __future__ import annotations

import json

from vlaforge.cli import main
from vlaforge.models.policy import VLAPolicy
from vlaforge.quickstart import loss_curve_svg

TINY = [
    "--tasks", "reach-v3", "--episodes-per-task", "2", "--eval-episodes", "2", "--image-size", "32",
    "--batch-size", "8", "--budget-minutes", "0.2", "--max-steps", "40", "--workers", "1",
]  # fmt: skip


def test_quickstart_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"report: {(out / 'report.html').resolve()}" in printed
    # Each stage printed the command that reproduces it.
    for command in ("$ vlaforge collect metaworld", "$ vlaforge train", "$ vlaforge eval"):
        assert command in printed

    info = json.loads((out / "eval" / "eval_info.json").read_text())
    assert info["tasks"] == ["reach-v3"] and len(info["episodes"]) == 2
    log = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in log) >= 50  # the floor on steps when the budget is this small

    html = (out / "report.html").read_text()
    assert "vlaforge quickstart" in html and "Training" in html and "<polyline" in html
    videos = [e["video"] for e in info["episodes"] if e.get("video")]
    assert videos and all(f'src="eval/{v}"' in html and (out / "eval" / v).exists() for v in videos)

    policy = VLAPolicy.from_pretrained(out / "run" / "checkpoints" / "last")
    assert policy.config.image_size == 32

    # A second run reuses the finished dataset instead of collecting again.
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    assert "reusing the finished dataset" in capsys.readouterr().out


def test_quickstart_rejects_bad_options(capsys):
    assert main(["quickstart", "--tasks", "reach-v9000"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(["quickstart", "--budget-minutes", "0"]) == 2
    assert main(["quickstart", "--eval-episodes", "0"]) == 2
    assert "--eval-episodes must be at least 1" in capsys.readouterr().err
    assert main(["quickstart", "--cameras", "corner9"]) == 2
    err = capsys.readouterr().err
    assert "corner9" in err and "workspace" in err  # names the bad camera and lists the good ones


def test_quickstart_cameras_reach_collection_and_the_policy(tmp_path):
    from vlaforge.config import apply_overrides
    from vlaforge.models.presets import get_preset
    from vlaforge.quickstart import Quickstart, QuickstartConfig

    qs = Quickstart(QuickstartConfig(out=str(tmp_path / "qs"), cameras="workspace"))
    command = qs.train_command(10, tmp_path / "run")
    assert apply_overrides(get_preset("default"), list(command.model)).cameras == ("workspace",)
    assert qs._settings()["cameras"] == "workspace"
    default = Quickstart(QuickstartConfig(out=str(tmp_path / "qs2")))
    assert "cameras" not in default._settings()  # a run from before the option is still reused
    default_model = default.train_command(10, tmp_path / "r").model
    assert apply_overrides(get_preset("default"), list(default_model)).cameras == ("corner2",)


def test_a_calibrated_run_trains_until_its_time_is_up(tmp_path):
    from vlaforge.quickstart import CLOCK_HEADROOM, Quickstart, QuickstartConfig
    from vlaforge.train.config import validate

    qs = Quickstart(QuickstartConfig(out=str(tmp_path / "qs")))
    loop = validate(qs.clocked_command(400, tmp_path / "run", seconds=300.0).train)
    # the clock stops it and drives the cosine; the step cap only guards against a bad estimate
    assert loop.max_minutes == 5.0 and loop.lr_follows_clock and loop.steps == CLOCK_HEADROOM * 400
    assert loop.save_every == 100
    spent = validate(qs.clocked_command(50, tmp_path / "run", seconds=-20.0).train)
    assert spent.max_minutes == 0 and not spent.lr_follows_clock and spent.steps == 50  # the floor


def test_loss_curve_needs_two_points_and_draws_validation():
    assert "No loss curve" in loss_curve_svg([{"step": 1, "loss": 1.0}])
    svg = loss_curve_svg([{"step": 1, "loss": 1.0}, {"step": 9, "loss": 0.1}, {"step": 9, "val_loss": 0.2}])
    assert svg.count("<polyline") == 2 and "validation 0.200" in svg and "train 0.100" in svg
