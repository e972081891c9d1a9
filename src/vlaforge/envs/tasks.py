"""Meta-World v3 task names, suites and official instructions.

Pure data plus `resolve_tasks`; importing this module does not import MuJoCo or metaworld (the
ML45 split is read from metaworld lazily, the first time it is asked for).

- `MT50`: the 50 v3 tasks, sorted alphabetically.
- `MT10`: Meta-World's MT10 (same order as `metaworld.env_dict.MT10_V3`).
- `DIFFICULTY`: the easy (28) / medium (11) / hard (6) / very_hard (5) groups of the SmolVLA/TinyVLA
  tables, in the order LeRobot lists them; the published average is the plain mean of the four
  group means.
- `TASK_DESCRIPTIONS`: Farama's instruction strings exactly as LeRobot's Meta-World env uses them
  (49 distinct strings: push and push-back share "Push the puck to a goal").
- `resolve_tasks("mt10,pick-place")` expands suites and comma lists, accepts names with or without
  the `-v3` suffix, keeps the first occurrence of a repeat, and raises `VlaforgeError` with a
  "did you mean" hint for unknown names.
"""

from __future__ import annotations

import difflib
from functools import cache

from vlaforge.errors import VlaforgeError

SUFFIX = "-v3"

TASK_DESCRIPTIONS: dict[str, str] = {
    "assembly-v3": "Pick up a nut and place it onto a peg",
    "basketball-v3": "Dunk the basketball into the basket",
    "bin-picking-v3": "Grasp the puck from one bin and place it into another bin",
    "box-close-v3": "Grasp the cover and close the box with it",
    "button-press-topdown-v3": "Press a button from the top",
    "button-press-topdown-wall-v3": "Bypass a wall and press a button from the top",
    "button-press-v3": "Press a button",
    "button-press-wall-v3": "Bypass a wall and press a button",
    "coffee-button-v3": "Push a button on the coffee machine",
    "coffee-pull-v3": "Pull a mug from a coffee machine",
    "coffee-push-v3": "Push a mug under a coffee machine",
    "dial-turn-v3": "Rotate a dial 180 degrees",
    "disassemble-v3": "Pick a nut out of a peg",
    "door-close-v3": "Close a door with a revolving joint",
    "door-lock-v3": "Lock the door by rotating the lock clockwise",
    "door-open-v3": "Open a door with a revolving joint",
    "door-unlock-v3": "Unlock the door by rotating the lock counter-clockwise",
    "drawer-close-v3": "Push and close a drawer",
    "drawer-open-v3": "Open a drawer",
    "faucet-close-v3": "Rotate the faucet clockwise",
    "faucet-open-v3": "Rotate the faucet counter-clockwise",
    "hammer-v3": "Hammer a screw on the wall",
    "hand-insert-v3": "Insert the gripper into a hole",
    "handle-press-side-v3": "Press a handle down sideways",
    "handle-press-v3": "Press a handle down",
    "handle-pull-side-v3": "Pull a handle up sideways",
    "handle-pull-v3": "Pull a handle up",
    "lever-pull-v3": "Pull a lever down 90 degrees",
    "peg-insert-side-v3": "Insert a peg sideways",
    "peg-unplug-side-v3": "Unplug a peg sideways",
    "pick-out-of-hole-v3": "Pick up a puck from a hole",
    "pick-place-v3": "Pick and place a puck to a goal",
    "pick-place-wall-v3": "Pick a puck, bypass a wall and place the puck",
    "plate-slide-back-side-v3": "Get a plate from the cabinet sideways",
    "plate-slide-back-v3": "Get a plate from the cabinet",
    "plate-slide-side-v3": "Slide a plate into a cabinet sideways",
    "plate-slide-v3": "Slide a plate into a cabinet",
    "push-back-v3": "Push the puck to a goal",
    "push-v3": "Push the puck to a goal",
    "push-wall-v3": "Bypass a wall and push a puck to a goal",
    "reach-v3": "Reach a goal position",
    "reach-wall-v3": "Bypass a wall and reach a goal",
    "shelf-place-v3": "Pick and place a puck onto a shelf",
    "soccer-v3": "Kick a soccer into the goal",
    "stick-pull-v3": "Grasp a stick and pull a box with the stick",
    "stick-push-v3": "Grasp a stick and push a box using the stick",
    "sweep-into-v3": "Sweep a puck into a hole",
    "sweep-v3": "Sweep a puck off the table",
    "window-close-v3": "Push and close a window",
    "window-open-v3": "Push and open a window",
}

MT50: list[str] = sorted(TASK_DESCRIPTIONS)

MT10: list[str] = [
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
    "window-close-v3",
]  # fmt: skip


def _v3(names: str) -> list[str]:
    return [n + SUFFIX for n in names.split()]


DIFFICULTY: dict[str, list[str]] = {
    "easy": _v3(
        "button-press button-press-topdown button-press-topdown-wall button-press-wall coffee-button "
        "dial-turn door-close door-lock door-open door-unlock drawer-close drawer-open faucet-close "
        "faucet-open handle-press handle-press-side handle-pull handle-pull-side lever-pull plate-slide "
        "plate-slide-back plate-slide-back-side plate-slide-side reach reach-wall window-close "
        "window-open peg-unplug-side"
    ),
    "medium": _v3(
        "basketball bin-picking box-close coffee-pull coffee-push hammer peg-insert-side push-wall "
        "soccer sweep sweep-into"
    ),
    "hard": _v3("assembly hand-insert pick-out-of-hole pick-place push push-back"),
    "very_hard": _v3("shelf-place disassemble stick-pull stick-push pick-place-wall"),
}

#: Suite names accepted by `resolve_tasks` (besides single task names).
SUITES: tuple[str, ...] = ("mt10", "mt50", *DIFFICULTY, "ml45-train", "ml45-test")


def difficulty_of(task: str) -> str:
    """The difficulty group (`easy|medium|hard|very_hard`) of a task name (with or without -v3)."""
    name = canonical(task)
    return next(group for group, names in DIFFICULTY.items() if name in names)


def canonical(name: str) -> str:
    """`reach` or `reach-v3` -> `reach-v3`; unknown names raise `VlaforgeError` with a hint."""
    name = name.strip().lower()
    full = name if name.endswith(SUFFIX) else name + SUFFIX
    if full in TASK_DESCRIPTIONS:
        return full
    hint = _closest(name)
    raise VlaforgeError(
        f"unknown Meta-World task {name!r}{hint}; use a v3 task name (e.g. reach-v3) or a suite: {', '.join(SUITES)}"
    )


def _closest(name: str) -> str:
    """The better of the closest task name and the closest suite name, as a " (did you mean ...)" hint."""
    stem = name.removesuffix(SUFFIX)
    stems = {t.removesuffix(SUFFIX): t for t in MT50}
    best = difflib.get_close_matches(stem, [*stems, *SUITES], n=1, cutoff=0.5)
    return f" (did you mean {stems.get(best[0], best[0])!r}?)" if best else ""


@cache
def ml45_split() -> dict[str, list[str]]:
    """ML45's train (45) and test (5) task lists, taken from metaworld itself."""
    from metaworld.env_dict import ML45_V3

    return {split: list(ML45_V3[split]) for split in ("train", "test")}


def suite(name: str) -> list[str] | None:
    """The task list of a suite name, or None when `name` is not a suite."""
    key = name.strip().lower().replace("_", "-")
    if key == "mt10":
        return list(MT10)
    if key == "mt50":
        return list(MT50)
    if key in ("ml45-train", "ml45-test"):
        return ml45_split()[key.split("-")[1]]
    group = key.replace("-", "_")
    return list(DIFFICULTY[group]) if group in DIFFICULTY else None


def resolve_tasks(spec: str) -> list[str]:
    """Expand `spec` (task names, suites, comma lists) into unique canonical task names, in order."""
    items = [s for s in (part.strip() for part in spec.split(",")) if s]
    if not items:
        raise VlaforgeError(
            f"no tasks given in {spec!r}; name tasks (e.g. reach-v3) or a suite: {', '.join(SUITES)}"
        )
    out: list[str] = []
    for item in items:
        for name in suite(item) or [canonical(item)]:
            if name not in out:
                out.append(name)
    return out


def description(task: str) -> str:
    """The official instruction of a task (`reach` or `reach-v3`)."""
    return TASK_DESCRIPTIONS[canonical(task)]
