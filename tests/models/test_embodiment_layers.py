"""Per-embodiment input/output layers (`model.embodiment_layers="separate"`, HPT-style) against one
shared padded projection: which weights each dataset uses, what trains, save/load, bad configs."""

from __future__ import annotations

import pytest
import torch

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.models.heads.common import EmbodimentLinear
from vlaforge.models.policy import VLAPolicy

KINDS = ["regression", "diffusion", "flow"]


def test_embodiment_linear_is_one_linear_per_dataset_index():
    torch.manual_seed(0)
    layer = EmbodimentLinear(5, 3, count=3)
    x = torch.randn(4, 2, 5)  # [B, T, in]
    index = torch.tensor([2, 0, 2, 1])
    y = layer(x, index)  # [B, T, out]
    for b, e in enumerate(index.tolist()):
        expect = torch.nn.functional.linear(x[b], layer.weight[e], layer.bias[e])
        torch.testing.assert_close(y[b], expect, rtol=1e-6, atol=1e-6)
    y[index == 2].sum().backward()  # only embodiment 2's samples reach the loss
    assert layer.weight.grad[2].abs().sum() > 0 and layer.bias.grad[2].abs().sum() > 0
    assert layer.weight.grad[[0, 1]].abs().sum() == 0 and layer.bias.grad[[0, 1]].abs().sum() == 0
    with pytest.raises(VlaforgeError, match="needs dataset_index"):
        layer(x)  # three weight sets and no index: which one is meant?
    single = EmbodimentLinear(5, 3, count=1)
    torch.testing.assert_close(single(x), single(x, torch.zeros(4, dtype=torch.long)))


def _mixture_policy(tiny_config, make_stats, kind: str, layers: str) -> VLAPolicy:
    torch.manual_seed(0)
    cfg = tiny_config(kind, embodiment_layers=layers, num_embodiments=2)
    return VLAPolicy(cfg, [make_stats(), make_stats()]).eval()  # equal stats: only the layers differ


@pytest.mark.parametrize("kind", KINDS)
def test_each_dataset_acts_through_its_own_layers_and_shared_layers_do_not_tell_them_apart(
    tiny_config, fake_batch, make_stats, kind
):
    batch = fake_batch(tiny_config(kind), batch=2)
    outs = {}
    for layers in ("separate", "shared"):
        policy = _mixture_policy(tiny_config, make_stats, kind, layers)
        for e in (0, 1):
            obs = {**batch, keys.DATASET_INDEX: torch.full((2,), e)}
            outs[layers, e] = policy.sample_actions(obs, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(outs["separate", 0], outs["separate", 1])
    torch.testing.assert_close(outs["shared", 0], outs["shared", 1], rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_of_one_dataset_trains_that_datasets_layers_and_the_shared_trunk(
    tiny_config, fake_batch, make_stats, kind
):
    policy = _mixture_policy(tiny_config, make_stats, kind, "separate").train()
    batch = {**fake_batch(policy.config, batch=3), keys.DATASET_INDEX: torch.ones(3, dtype=torch.long)}
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    per_embodiment = {
        f"{prefix}.{name}": p
        for prefix, m in policy.named_modules()
        if isinstance(m, EmbodimentLinear)
        for name, p in m.named_parameters(recurse=False)
    }
    assert "obs_encoder.state.weight" in per_embodiment  # the proprio input layer
    assert any(k.startswith("head.") for k in per_embodiment)  # the head's action layers
    for name, p in per_embodiment.items():
        assert p.shape[0] == 2, name
        assert p.grad[1].abs().sum() > 0, name
        assert p.grad[0].abs().sum() == 0, name  # embodiment 0 saw no sample
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.trunk.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_separate_layers_save_and_load(tmp_path, tiny_config, fake_batch, make_stats, kind):
    policy = _mixture_policy(tiny_config, make_stats, kind, "separate")
    obs = {**fake_batch(policy.config, batch=2), keys.DATASET_INDEX: torch.tensor([1, 0])}
    out = policy.sample_actions(obs, generator=torch.Generator().manual_seed(3))
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.embodiment_layers == "separate" and loaded.config.num_embodiments == 2
    again = loaded.sample_actions(obs, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    no_index = {k: v for k, v in obs.items() if k != keys.DATASET_INDEX}
    with pytest.raises(VlaforgeError, match="needs dataset_index"):
        loaded.sample_actions(no_index)


def test_shared_layers_keep_their_checkpoint_tensors(tiny_config, make_stats):
    """Shared is the default and its tensors keep the names and shapes older checkpoints have."""
    shapes = {
        k: tuple(v.shape)
        for k, v in VLAPolicy(tiny_config("regression"), [make_stats()]).state_dict().items()
    }
    assert shapes["obs_encoder.state.weight"] == (32, 4)
    assert shapes["head.mlp.mlp.out.1.weight"] == (4, 32)
    separate = VLAPolicy(
        tiny_config("regression", embodiment_layers="separate", num_embodiments=3), [make_stats()] * 3
    ).state_dict()
    assert set(separate) == set(shapes)  # same names, one more leading dim on the embodiment layers
    assert tuple(separate["obs_encoder.state.weight"].shape) == (3, 32, 4)
    assert tuple(separate["head.mlp.mlp.out.1.weight"].shape) == (3, 4, 32)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"head": "tokens"}, "built for the regression, diffusion, flow heads"),
        ({"head": "flow-expert"}, "not head 'flow-expert'"),
        ({"num_embodiments": 0}, "num_embodiments must be >= 1"),
        ({"embodiment_layers": "per-robot"}, 'embodiment_layers must be "shared" or "separate"'),
    ],
)
def test_bad_embodiment_layer_configs_are_named(tiny_config, fields, message):
    rest = {k: v for k, v in fields.items() if k != "head"}  # the parametrized dict stays as given
    cfg = tiny_config(fields.get("head", "regression"), **{"embodiment_layers": "separate", **rest})
    with pytest.raises(VlaforgeError, match=message):
        VLAPolicy(cfg, None)


def test_onnx_export_and_serving_pick_the_embodiments_layers(tmp_path, tiny_config, make_stats):
    """One ONNX graph per embodiment bakes in that embodiment's weight set; the server's runtime
    passes its index (the mixture record is the one of tests/models/test_camera_slots.py)."""
    import numpy as np
    from test_camera_slots import SLOTS, record

    from vlaforge.deploy.export import ObservationToActions, OnnxPolicy, example_inputs, export_onnx
    from vlaforge.serve.protocol import ObservationRequest
    from vlaforge.serve.runtime import PolicyRuntime

    torch.manual_seed(0)
    cfg = tiny_config("regression", cameras=SLOTS, embodiment_layers="separate", num_embodiments=2)
    policy = VLAPolicy(cfg, [make_stats(), make_stats()], metadata=record()).eval()
    graph = ObservationToActions(policy, "panda").eval()
    feed = example_inputs(policy, embodiment="panda")

    def torch_actions() -> torch.Tensor:
        with torch.no_grad():
            return graph(*[feed[k] for k in graph.input_names()])  # [1, H, A]

    ref = torch_actions()
    onnx = OnnxPolicy(export_onnx(policy, tmp_path / "panda.onnx", embodiment="panda"))
    np.testing.assert_allclose(onnx.sample_actions(feed), ref.numpy(), atol=1e-4)
    with torch.no_grad():  # the panda graph reads weight set 1 only
        policy.head.mlp.mlp.out[1].weight[0].add_(1.0)
        torch.testing.assert_close(torch_actions(), ref, rtol=0, atol=0)
        policy.head.mlp.mlp.out[1].weight[1].add_(1.0)
        assert not torch.allclose(torch_actions(), ref)
    runtime = PolicyRuntime(policy, embodiment="panda", warmup=True)
    try:
        request = ObservationRequest(
            {
                keys.image_key(c): np.zeros((1, 32, 32, 3), np.uint8)
                for c in ("agentview", "robot0_eye_in_hand")
            },
            np.zeros((1, 4), np.float32),
            "lift",
        )
        result = runtime.submit(runtime.connection().window(request)).result(timeout=60)
        assert result["actions"].shape == (4, 4) and np.isfinite(result["actions"]).all()
    finally:
        runtime.close()
