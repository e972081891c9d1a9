"""The wire format against openpi_client.msgpack_numpy, and request validation."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from openpi_client import msgpack_numpy

from vlaforge.serve.protocol import (
    ObservationSpec,
    ProtocolError,
    is_reset,
    packb,
    unpackb,
    validate_observation,
)

SPEC = ObservationSpec(cameras=("corner2", "wrist"), image_size=32, history=2, state_dim=4)


def _message() -> dict:
    rng = np.random.default_rng(0)
    return {
        "observation.images.corner2": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "observation.state": rng.standard_normal(4).astype(np.float32),
        "prompt": "reach the goal",
        "nested": {
            "ints": np.arange(6, dtype=np.int64).reshape(2, 3),
            "flag": np.bool_(True),
            "x": np.float64(2.5),
        },
    }


def _equal(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    else:  # scalars: np.float64 is a Python float and travels as one (as in openpi)
        assert a == b and np.asarray(a).dtype.kind == np.asarray(b).dtype.kind


def test_openpi_packs_we_unpack_and_back():
    msg = _message()
    _equal(unpackb(msgpack_numpy.packb(msg)), msg)
    _equal(msgpack_numpy.unpackb(packb(msg)), msg)
    assert packb(msg) == msgpack_numpy.packb(msg)  # byte-identical wire format


def test_non_contiguous_arrays_travel_in_c_order():
    a = np.arange(12, dtype=np.float32).reshape(3, 4).T
    np.testing.assert_array_equal(msgpack_numpy.unpackb(packb({"a": a}))["a"], a)


@pytest.mark.parametrize(
    "record, problem",
    [
        ({b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]}, "not allowed"),
        ({b"__ndarray__": True, b"data": b"\0" * 7, b"dtype": "<f4", b"shape": [2]}, "needs 8 bytes"),
        ({b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "<f4", b"shape": [-2]}, "bad array shape"),
        ({b"__ndarray__": True, b"data": b"", b"dtype": "nonsense", b"shape": [0]}, "bad array dtype"),
        ({b"__ndarray__": True, b"dtype": "<f4", b"shape": [0]}, "'data' field"),
    ],
)
def test_hostile_array_records_are_refused(record, problem):
    with pytest.raises(ProtocolError, match=problem):
        unpackb(msgpack.packb({"x": record}))


def test_garbage_and_text_are_protocol_errors():
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        unpackb(b"\xc1\xc1 definitely not msgpack")
    with pytest.raises(ProtocolError, match="text frame"):
        unpackb("hello")


def test_valid_observation_single_frame_and_window():
    req = validate_observation(_message(), SPEC)
    assert req.images["observation.images.wrist"].shape == (1, 32, 32, 3)
    assert req.state.shape == (1, 4) and req.state.dtype == np.float32 and req.task == "reach the goal"
    msg = _message()
    msg = {**msg, "task": msg.pop("prompt")}
    for key in ("observation.images.corner2", "observation.images.wrist", "observation.state"):
        msg[key] = np.stack([msg[key]] * 2)
    req = validate_observation(msg, SPEC)
    assert req.images["observation.images.corner2"].shape == (2, 32, 32, 3) and req.state.shape == (2, 4)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda m: m.pop("observation.images.wrist"), "missing key 'observation.images.wrist'"),
        (lambda m: m.pop("observation.state"), "missing key 'observation.state'"),
        (lambda m: m.pop("prompt"), "missing the instruction"),
        (lambda m: m.update(prompt=""), "non-empty string"),
        (lambda m: m.update(task="something else"), "disagree"),
        (lambda m: m.update({"observation.state": np.zeros(3, np.float32)}), r"shape \[4\]"),
        (lambda m: m.update({"observation.state": np.array([0, np.nan, 0, 0], np.float32)}), "NaN or Inf"),
        (lambda m: m.update({"observation.state": np.array(["a"] * 4)}), "float array"),
        (
            lambda m: m.update({"observation.images.wrist": np.full((32, 32, 3), np.nan, np.float32)}),
            "must be uint8",
        ),
        (lambda m: m.update({"observation.images.wrist": np.zeros((32, 32), np.uint8)}), r"\[H, W, 3\]"),
        (
            lambda m: m.update({"observation.images.wrist": np.zeros((5, 32, 32, 3), np.uint8)}),
            "carries 5 frames",
        ),
        (
            lambda m: m.update({"observation.images.wrist": np.zeros((16, 16, 3), np.uint8)}),
            "same image size",
        ),
        (lambda m: m.update({"observation.images.wrist": [1, 2, 3]}), "numpy array"),
    ],
)
def test_bad_observations_name_the_problem(change, problem):
    msg = _message()
    change(msg)
    with pytest.raises(ProtocolError, match=problem):
        validate_observation(msg, SPEC)


def test_typo_in_a_key_gets_a_hint_and_non_dicts_are_refused():
    msg = _message()
    msg["observation.image.wrist"] = msg.pop("observation.images.wrist")
    with pytest.raises(ProtocolError, match="did you mean 'observation.image.wrist'"):
        validate_observation(msg, SPEC)
    with pytest.raises(ProtocolError, match="map of observation keys"):
        validate_observation([1, 2], SPEC)


def test_reset_message():
    assert is_reset(unpackb(packb({"reset": True})))
    assert not is_reset(_message()) and not is_reset({"reset": 1}) and not is_reset([])
