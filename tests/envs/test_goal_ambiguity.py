"""benchmarks/goal_ambiguity.py: the one-camera depth bound for Meta-World's goal tasks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld")

_PATH = Path(__file__).parents[2] / "benchmarks" / "goal_ambiguity.py"
_spec = importlib.util.spec_from_file_location("goal_ambiguity", _PATH)
ga = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ga)


def test_box_segment_is_where_the_ray_runs_inside_the_box():
    lo, hi = np.zeros(3), np.ones(3)
    origin = np.array([-1.0, 0.5, 0.5])
    t0, t1 = ga.box_segment(origin, np.array([1.0, 0.0, 0.0]), lo, hi)
    assert (t0, t1) == pytest.approx((1.0, 2.0))
    diagonal = np.ones(3) / np.sqrt(3)
    t0, t1 = ga.box_segment(-diagonal, diagonal, lo, hi)  # enters at a corner, leaves at the opposite one
    assert (t0, t1) == pytest.approx((1.0, 1.0 + np.sqrt(3)))


def test_a_floating_goal_is_ambiguous_along_its_ray_and_a_table_goal_is_not():
    reach = ga.task_bound("reach-v3", samples=300, radius=0.05, size=96, seed=0)
    push = ga.task_bound("push-v3", samples=300, radius=0.05, size=96, seed=0)
    # reach's goal floats in a 20 x 10 x 25 cm box: a ray through it runs ~13 cm inside it
    assert reach["segment_length_m"]["median"] > 0.10
    assert reach["best_guess_success_bound"] < 0.95
    assert reach["median_guess_success_bound"] <= reach["best_guess_success_bound"] + 0.02
    # push's goal lies on the table (1 cm of height): its ray fixes it
    assert push["segment_length_m"]["p90"] < 0.03
    assert push["median_guess_success_bound"] == 1.0
    assert reach["published"]["placements"] == 50
