"""Task names, suites, difficulty groups and official instructions."""

import pytest

from vlaforge.envs import tasks
from vlaforge.envs.tasks import DIFFICULTY, MT10, MT50, TASK_DESCRIPTIONS, difficulty_of, resolve_tasks
from vlaforge.errors import VlaforgeError


def test_mt50_matches_metaworld():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3

    assert sorted(ALL_V3_ENVIRONMENTS) == MT50
    assert list(MT10_V3) == MT10


def test_difficulty_groups_partition_mt50():
    assert {g: len(v) for g, v in DIFFICULTY.items()} == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    assert sorted(sum(DIFFICULTY.values(), [])) == MT50
    assert difficulty_of("reach") == "easy"
    assert difficulty_of("basketball-v3") == "medium"
    assert difficulty_of("push-back-v3") == "hard"
    assert difficulty_of("stick-pull-v3") == "very_hard"


def test_descriptions_are_lerobots():
    assert set(TASK_DESCRIPTIONS) == set(MT50)
    assert len(set(TASK_DESCRIPTIONS.values())) == 49  # push and push-back share one
    assert TASK_DESCRIPTIONS["push-v3"] == TASK_DESCRIPTIONS["push-back-v3"] == "Push the puck to a goal"
    assert TASK_DESCRIPTIONS["assembly-v3"] == "Pick up a nut and place it onto a peg"
    assert tasks.description("drawer-open") == "Open a drawer"


def test_resolve_suites_lists_and_suffixes():
    assert resolve_tasks("reach,drawer-open-v3") == ["reach-v3", "drawer-open-v3"]
    assert resolve_tasks(" mt10 ") == MT10
    assert resolve_tasks("mt50") == MT50
    assert resolve_tasks("very_hard") == DIFFICULTY["very_hard"] == resolve_tasks("very-hard")
    # repeats keep their first position
    assert (
        resolve_tasks("reach-v3,mt10")[:2] == ["reach-v3", "push-v3"]
        and len(resolve_tasks("reach-v3,mt10")) == 10
    )


def test_ml45_split_comes_from_metaworld():
    train, test = resolve_tasks("ml45-train"), resolve_tasks("ml45-test")
    assert len(train) == 45 and len(test) == 5
    assert sorted(train + test) == MT50
    assert "bin-picking-v3" in test


@pytest.mark.parametrize(
    ("spec", "hint"),
    [("pick-plce", "pick-place-v3"), ("reach-v3,reech", "reach-v3"), ("mt11", "mt10"), ("ml45", "ml45-")],
)
def test_unknown_names_suggest(spec, hint):
    with pytest.raises(VlaforgeError, match="did you mean") as err:
        resolve_tasks(spec)
    assert hint in str(err.value) and "\n" not in str(err.value)


def test_empty_spec_is_an_error():
    with pytest.raises(VlaforgeError, match="no tasks"):
        resolve_tasks(" , ")
