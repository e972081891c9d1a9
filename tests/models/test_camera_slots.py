"""Camera slots across embodiments: masked slots cannot influence the policy, and each embodiment's
contract (PolicyIO, ObservationWindow, the export wrapper) feeds its own cameras into the slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlaforge import keys
from vlaforge.deploy.export import ObservationToActions, example_inputs
from vlaforge.errors import VlaforgeError
from vlaforge.models.io import CameraRecord, CheckpointRecord, EmbodimentRecord, PolicyIO
from vlaforge.models.policy import VLAPolicy

SLOTS = ("primary", "wrist")


def record() -> dict:
    """Two embodiments: a one-camera arm (corner2 -> primary) and a two-camera arm."""
    sawyer = EmbodimentRecord(
        0, "sawyer", 4, 4, cameras=(CameraRecord("corner2", (32, 32), "primary", "primary"),)
    )
    panda = EmbodimentRecord(
        1, "panda", 4, 4,
        cameras=(CameraRecord("agentview", (32, 32), "primary", "primary"),
                 CameraRecord("robot0_eye_in_hand", (32, 32), "wrist", "wrist")),
    )  # fmt: skip
    return CheckpointRecord(embodiments=(sawyer, panda)).to_metadata()


@pytest.fixture
def policy(tiny_config, make_stats):
    torch.manual_seed(0)
    cfg = tiny_config(cameras=SLOTS)
    return VLAPolicy(cfg, stats=[make_stats(), make_stats(shift=0.5)], metadata=record()).eval()


def test_a_masked_slot_cannot_change_the_actions(policy, fake_batch):
    batch = fake_batch(policy.config, batch=3)
    batch[keys.CAMERA_MASK] = torch.tensor([[True, False]] * 3)
    other = dict(
        batch,
        **{
            keys.image_key("wrist"): torch.randint(
                0, 256, batch[keys.image_key("wrist")].shape, dtype=torch.uint8
            )
        },
    )
    with torch.no_grad():
        a = policy.sample_actions(batch, generator=torch.Generator().manual_seed(0))
        b = policy.sample_actions(other, generator=torch.Generator().manual_seed(0))
        del other[keys.image_key("wrist")]  # a missing slot may also be absent from the observation
        c = policy.sample_actions(other, generator=torch.Generator().manual_seed(0))
        unmasked = {k: v for k, v in other.items() if k != keys.CAMERA_MASK}
        unmasked[keys.image_key("wrist")] = batch[keys.image_key("wrist")]
        d = policy.sample_actions(dict(unmasked, **{keys.image_key("wrist"): torch.zeros_like(batch[keys.image_key("wrist")])}),
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, d)  # an unmasked black image is an input, not a missing camera


def test_an_absent_slot_needs_the_mask(policy, fake_batch):
    batch = fake_batch(policy.config, batch=2)
    del batch[keys.image_key("wrist")]
    with pytest.raises(VlaforgeError, match="lacks 'observation.images.wrist'"):
        policy.sample_actions(batch)
    batch[keys.CAMERA_MASK] = torch.tensor([[True, True], [True, False]])  # row 0 claims a wrist image
    with pytest.raises(VlaforgeError, match="lacks 'observation.images.wrist'"):
        policy.sample_actions(batch)


def test_each_embodiment_feeds_its_own_cameras(policy):
    sawyer, panda = PolicyIO(policy, "sawyer"), PolicyIO(policy, "panda")
    assert sawyer.cameras == ("corner2",) and sawyer.slots == (("primary", "corner2"), ("wrist", None))
    assert panda.cameras == ("agentview", "robot0_eye_in_hand") and panda.embodiment == 1
    frame = np.full((32, 32, 3), 90, np.uint8)
    state = np.zeros(4, np.float32)
    window = sawyer.window().push({keys.image_key("corner2"): frame, keys.STATE: state, keys.TASK: "reach"})
    assert keys.image_key("primary") in window and keys.image_key("corner2") not in window
    assert window[keys.CAMERA_MASK].tolist() == [[True, False]]
    both = panda.window().push({keys.image_key("agentview"): frame, keys.image_key("robot0_eye_in_hand"): frame,
                                keys.STATE: state, keys.TASK: "lift"})  # fmt: skip
    assert keys.CAMERA_MASK not in both and both[keys.DATASET_INDEX].tolist() == [1]
    assert panda.describe()["cameras"]["robot0_eye_in_hand"]["slot"] == "wrist"
    with torch.no_grad():
        assert policy.sample_actions(window).shape == (1, 4, 4)
    with pytest.raises(VlaforgeError, match="lacks 'observation.images.agentview'"):
        panda.window().push({keys.image_key("corner2"): frame, keys.STATE: state, keys.TASK: "lift"})


def test_export_wrapper_takes_the_embodiment_cameras(policy):
    wrapper = ObservationToActions(policy, "sawyer").eval()
    inputs = example_inputs(policy, embodiment="sawyer")
    assert wrapper.input_names() == [keys.image_key("corner2"), keys.STATE, keys.OBS_IS_PAD, "text_embedding"]
    assert set(inputs) == set(wrapper.input_names())
    with torch.no_grad():
        out = wrapper(*[inputs[k] for k in wrapper.input_names()])
    assert out.shape == (1, 4, 4) and torch.isfinite(out).all()


def test_the_server_runtime_serves_one_embodiment_of_a_mixture(policy):
    from vlaforge.serve.protocol import ObservationRequest
    from vlaforge.serve.runtime import PolicyRuntime

    runtime = PolicyRuntime(policy, embodiment="sawyer", warmup=True)
    try:
        assert runtime.spec.cameras == ("corner2",)  # what a client of this robot sends
        request = ObservationRequest(
            {keys.image_key("corner2"): np.zeros((1, 32, 32, 3), np.uint8)},
            np.zeros((1, 4), np.float32),
            "reach",
        )
        result = runtime.submit(runtime.connection().window(request)).result(timeout=60)
        assert result["actions"].shape == (4, 4) and np.isfinite(result["actions"]).all()
    finally:
        runtime.close()
