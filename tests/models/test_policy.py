"""VLAPolicy: normalization, masks, save/load round trips, checkpoint checks, fine-tuning loads."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.models.normalize import Normalizer
from vlaforge.models.policy import VLAPolicy, read_weights


# ----------------------------------------------------------------------------- normalization
@pytest.mark.parametrize("mode", ["mean_std", "bounds"])
def test_normalization_round_trip_per_dataset(make_stats, mode):
    stats = [make_stats(), make_stats(shift=3.0)]
    stats[1][keys.ACTION]["std"][1] = 0.0  # a constant dim
    stats[1][keys.ACTION]["q01"][1] = stats[1][keys.ACTION]["q99"][1] = 3.0
    norm = Normalizer(keys.ACTION, 4, stats, mode, raw_dims=(3,))
    index = torch.tensor([0, 1, 1])
    center = torch.tensor([make_stats(shift=s)[keys.ACTION]["mean"] for s in (0.0, 3.0, 3.0)])
    x = center[:, None, :] + torch.rand(3, 5, 4) * 1.8 - 0.9  # [B, H, A], inside q01/q99
    n = norm.normalize(x, index)
    torch.testing.assert_close(norm.unnormalize(n, index), x)
    torch.testing.assert_close(n[..., 3], x[..., 3])  # the raw (gripper) dim is untouched
    assert torch.isfinite(n).all()
    if mode == "bounds":
        assert n[..., :3].abs().max() <= 1.0
        far = norm.normalize(x + 100.0, index)
        assert far[..., :3].max() == 1.0 and far[..., 3].min() > 90  # clipped, except the raw dim


def test_mean_std_values_and_missing_stats(make_stats):
    norm = Normalizer(keys.ACTION, 6, [make_stats()], "mean_std")  # stats cover 4 of 6 dims
    x = torch.zeros(1, 6)
    n = norm.normalize(x)
    expected = -torch.tensor(make_stats()[keys.ACTION]["mean"]) / 0.5
    torch.testing.assert_close(n[0, :4], expected)
    torch.testing.assert_close(n[0, 4:], torch.zeros(2))  # padded dims: identity
    with pytest.raises(VlaforgeError, match="dataset_index 1"):
        norm.normalize(x, torch.tensor([1]))
    identity = Normalizer(keys.ACTION, 4, None, "bounds")
    torch.testing.assert_close(identity.normalize(x[:, :4] + 0.5), x[:, :4] + 0.5)


# ----------------------------------------------------------------------------- forward, masks
def test_action_mask_combines_chunk_padding_and_dim_mask(tiny_config, fake_batch, stats):
    policy = VLAPolicy(tiny_config("regression", action_dim=6), stats)
    batch = fake_batch(policy.config)
    batch[keys.ACTION_IS_PAD][:, -1] = True
    batch[keys.ACTION_DIM_MASK] = torch.tensor([[True] * 4 + [False] * 2] * 2)
    actions, mask = policy._targets(batch)
    assert mask.shape == (2, 4, 6)
    assert mask[:, :-1, :4].all() and not mask[:, -1].any() and not mask[..., 4:].any()
    assert (actions[~mask] == 0).all()
    torch.manual_seed(0)
    loss, _ = policy.compute_loss(batch)
    batch[keys.ACTION][:, :, 4:] += 50.0  # masked entries must not matter
    batch[keys.ACTION][:, -1] -= 50.0
    torch.manual_seed(0)
    torch.testing.assert_close(policy.compute_loss(batch)[0], loss)


def test_smaller_robot_is_padded_and_actions_come_back_in_robot_units(tiny_config, fake_batch, stats):
    policy = VLAPolicy(tiny_config("regression", action_dim=6, state_dim=6), stats).eval()
    batch = fake_batch(tiny_config("regression"))  # a 4-d robot
    assert policy.compute_loss(batch)[0].isfinite()
    out = policy.sample_actions(batch)
    assert out.shape == (2, 4, 6)
    normalized = policy.head.sample(policy.encode(batch))
    torch.testing.assert_close(out[..., :4], policy.action_norm.unnormalize(normalized)[..., :4])


def test_wrong_inputs_are_clear_errors(tiny_config, fake_batch):
    policy = VLAPolicy(tiny_config())
    batch = fake_batch(policy.config)
    with pytest.raises(VlaforgeError, match="observation.images.corner2"):
        policy.sample_actions({k: v for k, v in batch.items() if not k.startswith(keys.IMAGE_PREFIX)})
    with pytest.raises(VlaforgeError, match=r"must be \[B, T, H, W, 3\]"):
        policy.sample_actions(
            dict(batch, **{"observation.images.corner2": batch["observation.images.corner2"][:, 0]})
        )
    batch[keys.ACTION] = batch[keys.ACTION][:, :2]
    with pytest.raises(VlaforgeError, match="chunks of 2 steps"):
        policy.compute_loss(batch)


# ----------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("kind", ["regression", "tokens", "diffusion", "flow", "flow-expert"])
def test_save_load_gives_identical_outputs(tmp_path, tiny_config, fake_batch, stats, kind):
    torch.manual_seed(1)
    policy = VLAPolicy(tiny_config(kind), stats, metadata={"fps": 80, "tasks": ["reach"]}).eval()
    batch = fake_batch(policy.config, frame=48)
    with torch.no_grad():  # move the weights away from their init so a fresh build would differ
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = policy.sample_actions(batch, generator=torch.Generator().manual_seed(3))
    policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "metadata.json", "model.safetensors", "stats.json"
    ]  # fmt: skip
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.metadata == {"fps": 80, "tasks": ["reach"]} and loaded.config == policy.config
    again = loaded.sample_actions(batch, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    assert len(list(tmp_path.iterdir())) == 1  # no temp dirs left behind


def test_resave_keeps_other_files_and_replaces_ours(tmp_path, tiny_config, stats):
    policy = VLAPolicy(tiny_config(), stats)
    ckpt = policy.save_pretrained(tmp_path / "last")
    (ckpt / "training_state").mkdir()
    policy.metadata["step"] = 7
    policy.save_pretrained(ckpt)
    assert (ckpt / "training_state").is_dir()
    assert json.loads((ckpt / "metadata.json").read_text()) == {"step": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_checkpoint_not_matching_its_config_fails_naming_the_tensor(tmp_path, tiny_config, stats):
    VLAPolicy(tiny_config(), stats).save_pretrained(tmp_path / "c")
    cfg_file = tmp_path / "c" / "config.json"
    good = json.loads(cfg_file.read_text())
    bad = json.loads(cfg_file.read_text())
    bad["trunk"]["depth"] = 3
    cfg_file.write_text(json.dumps(bad))
    with pytest.raises(VlaforgeError, match=r"missing tensor 'trunk\.blocks\.2\."):
        VLAPolicy.from_pretrained(tmp_path / "c")
    bad = json.loads(json.dumps(good))
    bad["trunk"]["width"] = 64
    cfg_file.write_text(json.dumps(bad))
    with pytest.raises(VlaforgeError, match=r"tensor '.*' has shape \[.*\] but its config gives"):
        VLAPolicy.from_pretrained(tmp_path / "c")
    cfg_file.write_text(json.dumps(good))
    weights = read_weights(tmp_path / "c")
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "c" / "model.safetensors"))
    with pytest.raises(VlaforgeError, match="unexpected tensor 'extra.weight'"):
        VLAPolicy.from_pretrained(tmp_path / "c")
    with pytest.raises(VlaforgeError, match="not a checkpoint directory"):
        VLAPolicy.from_pretrained(tmp_path / "nothing" / "here")
    with pytest.raises(VlaforgeError, match="local Hub cache"):
        VLAPolicy.from_pretrained("someone/not-cached-policy")


def test_partial_load_for_finetuning_reinitialises_only_what_does_not_fit(
    tmp_path, tiny_config, stats, make_stats
):
    source = VLAPolicy(tiny_config("flow"), stats)
    source.save_pretrained(tmp_path / "src")
    target = VLAPolicy(tiny_config("flow", action_dim=7, state_dim=5), [make_stats(7, 5)])
    norm_before = target.action_norm.center.clone()
    fresh = target.load_state_dict_partial(read_weights(tmp_path / "src"))
    assert "obs_encoder.state.weight" in fresh and any(k.startswith("head.") for k in fresh)
    assert not any(k.startswith("trunk.") for k in fresh)
    torch.testing.assert_close(target.trunk.blocks[0].qkv.weight, source.trunk.blocks[0].qkv.weight)
    torch.testing.assert_close(target.action_norm.center, norm_before)  # new stats kept
    with pytest.raises(VlaforgeError, match="checkpoint shape"):
        target.load_state_dict_partial(
            load_file(str(tmp_path / "src" / "model.safetensors")), strict_shapes=True
        )
