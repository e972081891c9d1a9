"""Metrics aggregation, eval seeds vs training seeds, and the report files (no simulator)."""

from __future__ import annotations

import json
import re

import pytest

from vlaforge.envs.tasks import DIFFICULTY, TASK_DESCRIPTIONS, difficulty_of
from vlaforge.errors import VlaforgeError
from vlaforge.eval.metrics import EpisodeResult, summarize
from vlaforge.eval.report import format_table, write_report
from vlaforge.eval.seeds import EVAL_SEED_BASE, TrainSeeds, eval_seeds


def _results(rates: dict[str, list[bool]]) -> list[EpisodeResult]:
    return [
        EpisodeResult(task, i, EVAL_SEED_BASE + i, ok, 10 + i, retries=int(task == "reach-v3" and i == 0))
        for task, oks in rates.items()
        for i, ok in enumerate(oks)
    ]


def test_overall_is_the_mean_of_group_means_not_of_tasks():
    easy = DIFFICULTY["easy"][:3]
    hard = DIFFICULTY["hard"][0]
    rates = {easy[0]: [True, True], easy[1]: [True, True], easy[2]: [True, False], hard: [False, False]}
    s = summarize(_results(rates), list(rates), difficulty_of)
    assert s["per_task"][easy[2]]["success_rate"] == 0.5
    assert s["per_group"]["easy"]["success_rate"] == pytest.approx(2.5 / 3)
    assert s["per_group"]["hard"]["success_rate"] == 0.0
    assert s["overall"]["success_rate"] == pytest.approx((2.5 / 3 + 0.0) / 2)  # published MT50 average
    assert s["overall"]["success_rate_task_mean"] == pytest.approx(2.5 / 4)
    assert list(s["per_group"]) == ["easy", "hard"]  # only the groups present, in table order


def test_task_metrics_list_seeds_lengths_and_retries():
    s = summarize(_results({"reach-v3": [True, False, True]}), ["reach-v3", "push-v3"], difficulty_of)
    m = s["per_task"]["reach-v3"]
    assert m["seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1, EVAL_SEED_BASE + 2]
    assert (m["episodes"], m["successes"], m["mean_length"], m["retries"]) == (3, 2, 11.0, 1)
    assert s["per_task"]["push-v3"]["success_rate"] is None  # not reached (e.g. after Ctrl-C)
    assert list(s["per_group"]) == ["easy"]


def test_eval_seeds_are_deterministic_disjoint_blocks():
    assert eval_seeds(0, 3) == [2**31, 2**31 + 1, 2**31 + 2] == eval_seeds(0, 3)
    assert set(eval_seeds(0, 100)).isdisjoint(eval_seeds(1, 100))
    from vlaforge.data.collect import episode_seed

    collected = [episode_seed(base, "reach-v3", a) for base in (0, 1, 123) for a in range(200)]
    assert max(collected) < min(eval_seeds(0, 1))  # collection seeds are 31-bit: below every eval seed


def test_train_seed_overlap_is_refused_unless_allowed():
    seeds = TrainSeeds.from_metadata({"train_seeds": {"reach-v3": [2**31 + 1, 5]}})
    with pytest.raises(VlaforgeError, match="--allow-train-seeds"):
        seeds.check(["reach-v3"], eval_seeds(0, 3), allow=False)
    report = seeds.check(["reach-v3"], eval_seeds(0, 3), allow=True)
    assert report["status"] == "overlap-allowed" and report["overlap"] == [["reach-v3", 2**31 + 1]]
    assert seeds.check(["push-v3"], eval_seeds(0, 3), allow=False)["status"] == "disjoint"


def test_train_seeds_recorded_by_instruction_match_the_task(tmp_path):
    # The trainer records LeRobot task strings (instructions), e.g. from a dataset's episodes.
    meta = {"train_seeds": [{"task": "Reach a goal position", "seed": 2**31 + 2}]}
    with pytest.raises(VlaforgeError, match="reach-v3:2147483650"):
        TrainSeeds.from_metadata(meta).check(
            ["reach-v3"], eval_seeds(0, 3), allow=False, instructions=TASK_DESCRIPTIONS
        )


def test_train_seeds_from_episode_records_and_when_absent():
    meta = {"episodes": [], "seeds": [{"task": "reach-v3", "seed": 3}, {"seed": 2**31}]}
    seeds = TrainSeeds.from_metadata(meta)
    assert seeds.pairs == {("reach-v3", 3), (None, 2**31)}
    with pytest.raises(VlaforgeError):  # a seed without a task counts for every task
        seeds.check(["drawer-open-v3"], eval_seeds(0, 1), allow=False)
    absent = TrainSeeds.from_metadata({"fps": 80}).check(["reach-v3"], [1], allow=False)
    assert absent["status"] == "unknown" and "no training seeds" in absent["source"]


def _info(tmp_results) -> dict:
    tasks = ["reach-v3", "pick-place-v3"]
    s = summarize(tmp_results, tasks, difficulty_of)
    s["per_task"]["reach-v3"]["instruction"] = "Reach <a goal> & stop"
    s["per_task"]["pick-place-v3"]["instruction"] = "Pick and place a puck to a goal"
    return {
        "created": "2026-01-01T00:00:00Z", "policy": "expert", "suite": "reach-v3,pick-place-v3", "tasks": tasks,
        "episodes_per_task": 2, "seed": 0,
        "execution": {"mode": "receding", "execute_steps": 8, "chunk": 16, "history": 2, "ensemble_coeff": None},
        "env": {"cameras": ["corner2"], "image_size": 64, "max_steps": 500}, **s,
        "timing": {"wall_time_s": 2.0, "env_steps": 100, "env_steps_per_s": 50.0, "policy_calls": 10, "policy_time_s": 0.1},
        "robustness": {"retries": 1, "worker_restarts": 1, "workers": 2}, "interrupted": False,
        "train_seeds": {"status": "unknown", "source": "none", "overlap": []},
        "episodes": [r.to_dict() for r in tmp_results],
    }  # fmt: skip


def test_html_report_has_table_chart_instructions_and_relative_videos(tmp_path):
    results = _results({"reach-v3": [True, True], "pick-place-v3": [False, True]})
    results[0] = EpisodeResult("reach-v3", 0, EVAL_SEED_BASE, True, 10, 1, "videos/reach-v3/episode_000.mp4")
    paths = write_report(tmp_path, _info(results))
    page = paths["html"].read_text()
    assert json.loads(paths["json"].read_text())["per_task"]["reach-v3"]["success_rate"] == 1.0
    assert page.startswith("<!DOCTYPE html>") and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert "Reach &lt;a goal&gt; &amp; stop" in page  # the instruction, escaped
    assert re.search(r"<svg[^>]*>.*reach-v3.*pick-place-v3.*mean: easy.*mean: hard.*</svg>", page, re.S)
    assert page.count("<rect") == 4  # two tasks + two group means
    assert '<video src="videos/reach-v3/episode_000.mp4"' in page
    assert "<td>pick-place-v3</td>" in page and "50.0%" in page


def test_terminal_table_lists_tasks_groups_overall_and_retries():
    info = _info(_results({"reach-v3": [True, True], "pick-place-v3": [False, True]}))
    text = format_table(info)
    assert re.search(r"reach-v3\s+easy\s+100.0%\s+2", text)
    assert re.search(r"pick-place-v3\s+hard\s+50.0%\s+2", text)
    assert "overall      75.0%" in text and "1 episode(s) retried" in text
    assert "50 steps/s" in text
