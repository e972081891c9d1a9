"""Safety supervisor: whatever the policy outputs, what reaches the robot stays within the limits."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlaforge.serve.safety import SafetyConfig, SafetySupervisor, braking_limit

CFG = SafetyConfig(max_step=0.01, max_step_change=0.004, hold_after_ms=None, stop_after_ms=None)
LOW, HIGH = np.array(CFG.workspace_low), np.array(CFG.workspace_high)
EPS = 1e-9

wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e30, -1e30, 1e-300, 0.0, 1.0, -1.0]),
    st.floats(-3, 3),
)
action = st.one_of(
    st.lists(wild, min_size=4, max_size=4),
    st.none(),
    st.lists(st.floats(-2, 2), min_size=0, max_size=6),  # wrong shapes
)
inside = st.tuples(*(st.floats(float(lo), float(hi)) for lo, hi in zip(LOW, HIGH, strict=True)))
# database=None: no .hypothesis/ folder in the repo; bounded examples keep the suite fast
fast = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _check(out: np.ndarray, cfg: SafetyConfig = CFG) -> None:
    assert out.shape == (4,) and out.dtype == np.float32 and np.isfinite(out).all()
    assert (out >= np.array(cfg.action_low) - EPS).all() and (out <= np.array(cfg.action_high) + EPS).all()
    assert cfg.gripper_low - EPS <= out[3] <= cfg.gripper_high + EPS


@fast
@given(start=inside, actions=st.lists(action, min_size=1, max_size=40))
def test_tracking_robot_never_leaves_the_limits(start, actions):
    """A robot that follows each command: velocity, acceleration and workspace hold at every step."""
    sup = SafetySupervisor(config=CFG)
    pos, prev = np.array(start), np.zeros(3)
    for a in actions:
        out = sup.filter(a, state=np.array([*pos, 0.0]))
        _check(out)
        step = out[:3].astype(np.float64) * CFG.action_scale  # metres
        assert (np.abs(step) <= CFG.max_step + EPS).all()
        assert (np.abs(step - prev) <= CFG.max_step_change + 1e-7).all()
        pos, prev = pos + step, step
        assert (pos >= LOW - 1e-7).all() and (pos <= HIGH + 1e-7).all()
    assert sup.interventions["limit_conflict"] == 0


@fast
@given(
    states=st.lists(st.lists(st.floats(-5, 5), min_size=4, max_size=4), min_size=1, max_size=20),
    actions=st.lists(action, min_size=20, max_size=20),
)
def test_arbitrary_observed_states_still_bounded(states, actions):
    """The observed state jumps around (the robot does not follow): still finite, bounded, and a
    target from inside the box stays inside."""
    sup = SafetySupervisor(config=CFG)
    prev = None
    for state, a in zip(states, actions, strict=False):
        out = _check_step(sup, a, np.array(state))
        pos, repeated, prev = np.array(state[:3]), state == prev, state
        if not repeated and (pos >= LOW).all() and (pos <= HIGH).all():  # a repeat is dead-reckoned
            target = pos + out[:3].astype(np.float64) * CFG.action_scale
            assert (target >= LOW - 1e-7).all() and (target <= HIGH + 1e-7).all()


def _check_step(sup: SafetySupervisor, a, state) -> np.ndarray:
    out = sup.filter(a, state=state)
    _check(out)
    assert (np.abs(out[:3].astype(np.float64) * CFG.action_scale) <= CFG.max_step + EPS).all()
    return out


@fast
@given(start=inside, targets=st.lists(st.lists(wild, min_size=4, max_size=4), min_size=1, max_size=25))
def test_absolute_mode_limits(start, targets):
    cfg = SafetyConfig(
        action_mode="absolute",
        action_low=None,
        action_high=None,
        max_step=0.02,
        max_step_change=0.005,
        hold_after_ms=None,
        stop_after_ms=None,
    )
    sup = SafetySupervisor(config=cfg)
    pos, prev = np.array(start), np.zeros(3)
    for i, t in enumerate(targets):
        out = sup.filter(t, state=np.array([*pos, 0.0]) if i == 0 else None)
        assert np.isfinite(out).all() and -1 - EPS <= out[3] <= 1 + EPS
        step = out[:3].astype(np.float64) - pos
        assert (np.abs(step) <= cfg.max_step + 1e-6).all() and (
            np.abs(step - prev) <= cfg.max_step_change + 1e-6
        ).all()
        assert (out[:3] >= LOW - 1e-6).all() and (out[:3] <= HIGH + 1e-6).all()
        pos, prev = out[:3].astype(np.float64), step


@settings(max_examples=100, database=None)
@given(d=st.floats(0, 1), a=st.floats(1e-4, 0.1))
def test_braking_limit_stops_inside(d, a):
    """Decelerating by `a` from the allowed speed travels no further than `d`."""
    v, travelled = float(braking_limit(np.array(d), a)), 0.0
    while v > 0:
        travelled += v
        v -= a
    assert travelled <= d + 1e-9


def test_nan_holds_with_a_controlled_stop_and_keeps_the_gripper():
    sup = SafetySupervisor(config=CFG)
    state = np.array([0.0, 0.7, 0.2, 0.0])
    for _ in range(5):
        moving = sup.filter([1.0, 0.0, 0.0, 0.8], state=state)
    assert moving[0] == pytest.approx(1.0)  # up to speed (0.004 m/step^2 -> 3 steps)
    held = [sup.filter([np.nan, 0, 0, 0], state=state) for _ in range(5)]
    steps = [h[0] * CFG.action_scale for h in held]
    assert steps[0] == pytest.approx(0.006) and steps[-1] == 0.0  # decelerates within the limit
    assert all(h[3] == pytest.approx(0.8) for h in held)  # the object in the hand is not dropped
    assert sup.interventions["nonfinite"] == 5


def test_watchdog_holds_then_latches_the_estop():
    now = [0.0]
    cfg = SafetyConfig(hold_after_ms=100, stop_after_ms=300, max_step_change=None)
    sup = SafetySupervisor(config=cfg, clock=lambda: now[0])
    state = np.array([0.0, 0.7, 0.2, 0.0])
    assert sup.filter([0.5, 0, 0, 0], state=state)[0] == pytest.approx(0.5)
    now[0] = 0.2
    assert sup.filter([0.5, 0, 0, 0], state=state)[0] == 0.0 and sup.stopped is None
    now[0] = 0.4
    assert sup.filter([0.5, 0, 0, 0], state=state)[0] == 0.0 and "watchdog" in sup.stopped
    sup.notify_chunk()  # neither a fresh chunk nor an episode reset releases a latched stop
    sup.reset()
    assert sup.filter([0.5, 0, 0, 0], state=state)[0] == 0.0
    sup.release_estop()
    assert sup.filter([0.5, 0, 0, 0], state=state)[0] == pytest.approx(0.5) and sup.stopped is None
    assert sup.interventions["watchdog_hold"] == 1 and sup.interventions["estop"] == 1


def test_estop_latch_and_logged_interventions(caplog):
    sup = SafetySupervisor(config=CFG)
    state = np.array([0.0, 0.7, 0.2, 0.0])
    with caplog.at_level(logging.INFO, logger="vlaforge.safety"):
        sup.filter([0.0, 0.0, 0.0, 5.0], state=state)  # gripper out of range
        sup.estop("operator")
        outs = [sup.filter([1.0, 1.0, 1.0, 1.0], state=state) for _ in range(3)]
    assert all((o[:3] == 0).all() for o in outs) and sup.stopped == "operator"
    assert sup.interventions["gripper_range"] == 1 and sup.interventions["estop_active"] == 3
    assert "gripper_range" in caplog.text and "estop" in caplog.text
    assert [e[1] for e in sup.events][:2] == ["gripper_range", "estop"]


def test_infer_previews_the_chunk_and_survives_a_failing_policy():
    def policy_output(obs):
        return {"actions": np.array([[1e9, -1e9, 3.0, 7.0]] * 5 + [[0, 0, np.inf, 0]] + [[np.nan] * 4] * 2)}

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def infer(self, obs):
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("server went away")
            return policy_output(obs)

    sup = SafetySupervisor(Flaky(), CFG)
    obs = {"observation.state": np.array([0.0, 0.7, 0.2, 0.0], np.float32)}
    chunk = sup.infer(obs)["actions"]
    assert chunk.shape == (8, 4) and np.isfinite(chunk).all() and (np.abs(chunk) <= 1 + EPS).all()
    assert chunk[0, 0] == pytest.approx(0.4) and chunk[2, 0] == pytest.approx(1.0)  # ramps up, capped
    assert (chunk[:, 3] == 1.0).all()  # gripper clipped, then held through the NaN rows
    failed = sup.infer(obs)["actions"]
    assert failed.shape == (8, 4) and (failed[:, :3] == 0).all() and sup.interventions["policy_error"] == 1
    # the preview does not move the live state: the per-step path still starts from rest
    assert sup.filter([1.0, 0, 0, 0], state=obs["observation.state"])[0] == pytest.approx(0.4)


def test_supervisor_around_a_real_client_holds_when_the_server_goes_away(server):
    from vlaforge.control.client import PolicyClient

    client = PolicyClient("127.0.0.1", server.port)
    sup = SafetySupervisor(client, SafetyConfig(max_step=0.005, hold_after_ms=None, stop_after_ms=None))
    obs = {
        "observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
        "observation.state": np.array([0.0, 0.7, 0.2, 0.0], np.float32),
        "prompt": "reach the goal",
    }
    raw = client.infer(obs)["actions"]
    client.reset()
    safe = sup.infer(obs)
    assert safe["actions"].shape == raw.shape and "server_timing" in safe
    assert (np.abs(safe["actions"][:, :3]) <= 0.5 + EPS).all()  # 0.005 m per step = 0.5 action units
    client.close()  # the link to the server drops mid-episode
    held = sup.infer(obs)["actions"]
    assert held.shape == raw.shape and sup.interventions["policy_error"] == 1
    assert np.abs(held[-1, :3]).max() == 0.0  # a controlled stop, not an exception on the robot


def test_a_hold_after_reset_keeps_the_gripper_closed():
    sup = SafetySupervisor(config=CFG)
    state = np.array([0.0, 0.7, 0.2, 1.0])
    assert sup.filter([0.0, 0.0, 0.0, 1.0], state=state)[3] == 1.0  # grasping
    sup.reset()  # a new episode (or a broker reset) must not drop the object on the next hold
    assert sup.filter([np.nan] * 4, state=state)[3] == 1.0


def test_clipping_the_action_range_is_counted():
    sup = SafetySupervisor(config=CFG)
    out = sup.filter([1e30, 0.0, 0.0, 0.0], state=np.array([0.0, 0.7, 0.2, 0.0]))
    assert np.isfinite(out).all() and sup.interventions["action_range"] == 1
    sup.filter([0.1, 0.0, 0.0, 0.0], state=np.array([0.0, 0.7, 0.2, 0.0]))
    assert sup.interventions["action_range"] == 1  # an action inside the range is not an intervention


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"workspace_low": (0.0, 0.0, 0.0), "workspace_high": None}, "set together"),
        ({"workspace_low": (0.0, 0.0), "workspace_high": (1.0, 1.0)}, "need 3 values"),
        ({"action_low": (1.0,) * 4, "action_high": (-1.0,) * 4}, "must not exceed"),
        ({"position_dims": ()}, "non-empty"),
        ({"gripper_dims": (2,)}, "both a position and a gripper"),
    ],
)
def test_inconsistent_configs_are_refused(kwargs, message):
    from vlaforge.errors import VlaforgeError

    with pytest.raises(VlaforgeError, match=message):
        SafetyConfig(**kwargs)


# ----------------------------------------------------------------------------- issue 17, section 3
huge = st.sampled_from([10**400, -(10**400), 2**1100])
bad_state = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.lists(st.floats(-1, 1), max_size=2),  # too short for the position dims
    st.lists(st.one_of(wild, huge), min_size=4, max_size=4),
    st.lists(st.lists(st.floats(-1, 1), min_size=4, max_size=4), min_size=0, max_size=2),  # [T, S]
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    inside.map(lambda p: [*p, 0.0]),
)
any_action = st.one_of(action, st.lists(st.one_of(wild, huge), min_size=4, max_size=4), st.text(max_size=4))


@fast
@given(steps=st.lists(st.tuples(any_action, bad_state), min_size=1, max_size=30))
def test_filter_never_raises_on_malformed_actions_or_states(steps):
    """Python ints beyond float range, strings, wrong lengths, NaN states: a counted hold, never an exception."""
    sup = SafetySupervisor(config=CFG)
    for a, state in steps:
        _check(sup.filter(a, state=state))
    chunk = sup.filter_chunk([[10**400, 0, 0, 0], [np.nan] * 4], state="not a state")
    assert chunk.shape == (2, 4) and np.isfinite(chunk).all()


def test_malformed_inputs_hold_and_are_counted():
    sup = SafetySupervisor(config=CFG)
    good = np.array([0.0, 0.7, 0.2, 0.0])
    sup.filter([0.5, 0, 0, 0], state=good)
    for a, state in [
        ([10**400, 0, 0, 0], good + 0.001),
        ([0.5, 0, 0, 0], "abc"),
        ([0.5, 0, 0, 0], [0.1, 0.2]),
    ]:
        out = sup.filter(a, state=state)
        assert np.isfinite(out).all() and abs(out[0]) < 0.5  # decelerating, not moving on
    assert sup.interventions["bad_action"] == 1 and sup.interventions["bad_state"] == 2


def _drive(sup: SafetySupervisor, steps: int, state_of, x: float = 0.45) -> np.ndarray:
    """A robot that executes every command exactly; `state_of(true_position)` is what it reports."""
    pos = np.array([x, 0.7, 0.2])
    for _ in range(steps):
        out = sup.filter([1.0, 0.0, 0.0, 0.0], state=state_of(pos))
        pos = pos + out[:3].astype(np.float64) * CFG.action_scale
    return pos


def test_frozen_state_is_dead_reckoned_against_the_box_then_held():
    """The repro: 300 steps of [1, 0, 0, 0] with a frozen state reached x = 3.45, 0 interventions."""
    sup = SafetySupervisor(config=CFG)
    frozen = np.array([0.45, 0.7, 0.2, 0.0])
    pos = _drive(sup, 300, lambda _: frozen)
    assert pos[0] <= HIGH[0] + 1e-7  # the box held, from our own integrated commands
    assert sup.interventions["position_limit"] > 0
    sup = SafetySupervisor(config=CFG)  # far from the wall: moving on a frozen state is held
    pos = _drive(sup, 300, lambda _: np.array([0.0, 0.7, 0.2, 0.0]), x=0.0)
    assert pos[0] == pytest.approx(0.01 * CFG.max_stale_steps, abs=0.02)
    assert sup.interventions["stale_state"] > 0
    # a fresh state releases the stale hold
    out = sup.filter([-1.0, 0, 0, 0], state=np.array([*pos, 0.0]))
    assert out[0] < 0


def test_absent_state_holds_unless_a_start_is_given_then_dead_reckons():
    sup = SafetySupervisor(config=CFG)
    pos = _drive(sup, 50, lambda _: None)
    assert np.allclose(pos, [0.45, 0.7, 0.2]) and sup.interventions["no_state"] == 50
    cfg = SafetyConfig(**{**CFG.__dict__, "initial_position": (0.45, 0.7, 0.2), "max_stale_steps": None})
    sup = SafetySupervisor(config=cfg)
    pos = _drive(sup, 300, lambda _: None)
    assert 0.49 < pos[0] <= HIGH[0] + 1e-7 and sup.interventions["position_limit"] > 0


def test_a_tracking_robot_is_never_stale():
    sup = SafetySupervisor(config=CFG)
    _drive(sup, 300, lambda p: np.array([*p, 0.0]))
    assert sup.interventions["stale_state"] == 0  # at the wall it stops: unchanged state, zero step


def test_non_finite_outputs_are_counted_and_latch_the_estop():
    """The repro: a NaN policy showed only {'no_action': 1} and never stopped."""

    class Broken:
        def infer(self, obs):
            return {"actions": np.full((8, 4), np.nan)}

    sup = SafetySupervisor(Broken(), SafetyConfig(**{**CFG.__dict__, "estop_after_nonfinite": 10}))
    obs = {"observation.state": np.array([0.0, 0.7, 0.2, 0.0])}
    sup.infer(obs)
    assert sup.interventions["chunk_nonfinite"] == 8 and sup.stopped is None
    sup.infer(obs)
    assert "10 non-finite" in sup.stopped and sup.interventions["estop"] == 1
    other = SafetySupervisor(config=SafetyConfig(**{**CFG.__dict__, "estop_after_nonfinite": 3}))
    for _ in range(2):
        other.filter([np.nan] * 4, state=obs["observation.state"])
    other.filter([0.1, 0, 0, 0], state=obs["observation.state"])  # a good output resets the count
    for _ in range(3):
        other.filter([np.inf] * 4, state=obs["observation.state"])
    assert other.interventions["nonfinite"] == 5 and "3 non-finite" in other.stopped


def test_chunk_preview_interventions_are_counted():
    sup = SafetySupervisor(config=CFG)
    sup.filter_chunk([[1e30, 0, 0, 5.0]] * 3, state=[0.0, 0.7, 0.2, 0.0])
    assert sup.interventions["chunk_action_range"] == 3 and sup.interventions["chunk_gripper_range"] == 3


def test_filter_chunk_commit_carries_the_motion_state():
    """Server side: the rows the robot executes become the live state (next chunk ramps from there)."""
    sup = SafetySupervisor(config=CFG)
    state = [0.0, 0.7, 0.2, 0.0]
    first = sup.filter_chunk([[1.0, 0, 0, 0]] * 8, state=state, commit=4)
    second = sup.filter_chunk([[1.0, 0, 0, 0]] * 8, state=state, commit=4)  # frozen: dead-reckoned
    assert first[0, 0] == pytest.approx(0.4) and second[0, 0] == pytest.approx(1.0)
    assert sup._target[0] == pytest.approx(0.004 + 0.008 + 0.01 * 6)
