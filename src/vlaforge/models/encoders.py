"""Tokenizers: images, instruction and proprio -> token groups for the trunk.

- Images (`ImageStem`): uint8 [B, T, H, W, C] -> float [B*T, C, S, S] (`vlaforge.image.resize` to
  `image_size` when the frame differs, the same resize the training frame cache used; pixels normalized per `image.pixel_norm`: ImageNet mean/std
  or [-1, 1]) -> stride-2 3x3 convs with GroupNorm + GELU -> a patch conv (kernel = stride) to the
  trunk width -> P = (S / patch_size)**2 tokens per camera and step (+ 1 keypoint token with
  `image.keypoints`: spatial-softmax coordinates of a finer stem map, `SpatialSoftmax`; with
  `image.film` each GroupNorm output is scaled and shifted per channel from the instruction, FiLM). With
  `image.encoder="efficientnet-lite0"` the convs are ImageNet EfficientNet-Lite0 up to
  `image.feature_stride` (pixels (x - 127) / 128, its training normalization) and a 1x1 conv
  projects its feature map: P = (S / feature_stride)**2 (`vlaforge.models.vision`). One stem is shared by all
  cameras (and the goal image); learned per-camera, per-step position embeddings tell them apart.
  Octo gives each camera its own stem; sharing keeps small presets small.
- Language (`TaskEncoder`): the frozen, cached sentence embedding (`vlaforge.models.language`)
  -> a linear projection to `language.num_tokens` task tokens (+ goal-image tokens if enabled);
  with `image.film` a second, zero-initialised projection gives the stem's FiLM parameters (the
  goal image goes through the stem unmodulated).
- Proprio: one linear token per history step (one linear layer per embodiment with
  `embodiment_layers="separate"`, picked by the dataset index).

Position embeddings are learned per token group (task, each camera, proprio) and history step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.image import resize
from vlaforge.models.config import PolicyConfig, embodiment_count
from vlaforge.models.heads.common import apply_linear, linear
from vlaforge.models.language import TextEmbedder
from vlaforge.models.vision import PIXEL_MEAN, PIXEL_STD, build_encoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GOAL_IMAGE = "goal_image"  # optional batch key: uint8 [B, H, W, C], used when image.goal_image is on


def _init_pos(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * 0.02)


def _conv_stem(cfg: PolicyConfig) -> tuple[nn.Module, nn.Module, int]:
    """The conv stem, its patch conv and the token side length (`image.encoder="conv"`)."""
    icfg, layers, ch = cfg.image, [], 3
    for out in icfg.stem_channels:
        groups = math.gcd(icfg.norm_groups, out)
        layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.GroupNorm(groups, out), nn.GELU()]
        ch = out
    kernel = icfg.patch_size // 2 ** len(icfg.stem_channels)
    return nn.Sequential(*layers), nn.Conv2d(ch, cfg.trunk.width, kernel, stride=kernel), icfg.patch_size


class SpatialSoftmax(nn.Module):
    """Feature map [N, C, h, w] -> one token [N, D] of K keypoints' expected (x, y).

    A 1x1 conv makes K maps; each map's softmax over its h * w positions (logits divided by a
    learned per-keypoint temperature, initially 1) weights the positions' coordinates, x and y in
    [-1, 1] (left/top = -1, cell centres); a linear layer maps the 2K coordinates to the trunk
    width. As robomimic's SpatialSoftmax, without its noise and with one token instead of a flat
    feature vector.
    """

    def __init__(self, channels: int, keypoints: int, width: int) -> None:
        super().__init__()
        self.maps = nn.Conv2d(channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(keypoints))
        self.proj = nn.Linear(2 * keypoints, width)

    def coordinates(self, features: torch.Tensor) -> torch.Tensor:
        """[N, C, h, w] -> the keypoints' expected (x, y) [N, K, 2]."""
        _, _, h, w = features.shape
        logits = self.maps(features).flatten(2) / self.log_temperature.exp()[:, None]  # [N, K, h*w]
        weights = logits.softmax(-1)  # [N, K, h*w]
        ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=features.device)  # [h] cell centres
        xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=features.device)  # [w]
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).view(h * w, 2)  # [h*w, 2] (x, y)
        return weights @ grid.to(weights.dtype)  # [N, K, 2]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(self.coordinates(features).flatten(1))  # [N, D]


def _pretrained_stem(cfg: PolicyConfig) -> tuple[nn.Module, nn.Module, int]:
    """EfficientNet-Lite0 features and a 1x1 projection to the trunk width (`vlaforge.models.vision`)."""
    net = build_encoder(cfg.image, cfg.image_size)
    return net, nn.Conv2d(net.out_channels, cfg.trunk.width, 1), cfg.image.feature_stride


def _pixel_affine(cfg: PolicyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) [3] with normalized = x * scale + shift for x in [0, 255]."""
    if cfg.image.encoder == "efficientnet-lite0":
        return torch.full((3,), 1 / PIXEL_STD), torch.full((3,), -PIXEL_MEAN / PIXEL_STD)
    if cfg.image.pixel_norm == "imagenet":  # x/255 then (x - mean) / std
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        return 1 / (255 * std), -mean / std
    return torch.full((3,), 2 / 255), torch.full((3,), -1.0)  # x/255 * 2 - 1


class ImageStem(nn.Module):
    """uint8 frames [N, H, W, C] -> patch tokens [N, P, D].

    `stem` is the conv stem or the pretrained feature network (`image.encoder`); `patch` makes the
    tokens (the patch conv, or a 1x1 projection of the pretrained feature map). The same two names
    for both keep the conv stem's checkpoint keys as they were.
    """

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        icfg = cfg.image
        self.image_size, self.pixel_norm = cfg.image_size, icfg.pixel_norm
        build = _pretrained_stem if icfg.encoder == "efficientnet-lite0" else _conv_stem
        self.stem, self.patch, stride = build(cfg)
        self.num_patches = (cfg.image_size // stride) ** 2  # tokens per camera and step
        self.keypoints, self._tap = None, 0
        if icfg.keypoints:  # conv stem only (validated): 3 modules per conv (conv, norm, GELU)
            self._tap = 3 * icfg.keypoint_level
            channels = icfg.stem_channels[icfg.keypoint_level - 1]
            self.keypoints = SpatialSoftmax(channels, icfg.keypoints, cfg.trunk.width)
            self.num_patches += 1
        # image.film (conv stem only): stem index of each GroupNorm -> where its (gamma, beta) start
        # in the FiLM parameters, one (gamma, beta) pair of its channels per conv in turn
        # (3 modules per conv: conv, GroupNorm, GELU)
        levels = range(len(icfg.stem_channels)) if icfg.film else ()
        self._film_at = {3 * lv + 1: 2 * sum(icfg.stem_channels[:lv]) for lv in levels}
        scale, shift = _pixel_affine(cfg)  # folded into one multiply-add on [0, 255]
        self.register_buffer("pix_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pix_shift", shift.view(1, 3, 1, 1), persistent=False)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, C] -> uint8 [N, S, S, C]: `vlaforge.image.resize`, the frame cache's resize."""
        return resize(frames.to(self.pix_scale.device), self.image_size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, C] -> normalized float [N, C, S, S]."""
        x = self.pixels(frames).permute(0, 3, 1, 2).float()  # [N, C, S, S] in [0, 255]
        return torch.addcmul(self.pix_shift, x, self.pix_scale)  # [N, C, S, S]

    def run_stem(
        self, x: torch.Tensor, film: torch.Tensor | None, lo: int = 0, hi: int | None = None
    ) -> torch.Tensor:
        """`self.stem[lo:hi]` on x [N, C, h, w]; with `film` [N, 2 * sum(stem_channels)] (the
        (gamma, beta) of each conv in turn) every GroupNorm output becomes x * (1 + gamma) + beta."""
        if film is None:  # the pretrained encoder is not a Sequential: sliced only with keypoints
            return self.stem(x) if lo == 0 and hi is None else self.stem[lo:hi](x)
        for i, module in enumerate(self.stem[lo:hi], start=lo):
            if i not in self._film_at:
                x = module(x)
                continue
            offset, c = self._film_at[i], module.num_channels  # GroupNorm's affine and FiLM folded:
            gamma, beta = film[:, offset : offset + c], film[:, offset + c : offset + 2 * c]  # [N, c]
            scale = module.weight * (1 + gamma)  # [N, c]
            shift = torch.addcmul(beta, module.bias, 1 + gamma)  # [N, c]
            x = F.group_norm(x, module.num_groups, eps=module.eps)  # [N, c, h, w]
            x = torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])  # [N, c, h, w]
        return x

    def forward(self, frames: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 frames [N, H, W, C] (+ FiLM parameters [N, F], see `run_stem`) -> tokens [N, P, D]."""
        x = self.preprocess(frames)  # [N, C, S, S]
        if self.keypoints is None:
            x = self.patch(self.run_stem(x, film))  # [N, D, s, s]
            return x.flatten(2).transpose(1, 2)  # [N, P, D]
        fine = self.run_stem(x, film, 0, self._tap)  # [N, C_l, S / 2**l, S / 2**l]
        x = self.patch(self.run_stem(fine, film, self._tap))  # [N, D, s, s]
        patches = x.flatten(2).transpose(1, 2)  # [N, P - 1, D]
        return torch.cat([patches, self.keypoints(fine)[:, None]], dim=1)  # [N, P, D]


class TaskEncoder(nn.Module):
    """Instructions (+ optional goal image) -> task tokens [B, L, D]."""

    def __init__(self, cfg: PolicyConfig, stem: ImageStem) -> None:
        super().__init__()
        lcfg, width = cfg.language, cfg.trunk.width
        self.text = TextEmbedder(lcfg.model, lcfg.max_length)  # frozen, not a submodule
        self.num_text = lcfg.num_tokens
        self.proj = nn.Linear(self.text.dim, lcfg.num_tokens * width)
        self.pos = _init_pos(lcfg.num_tokens, width)
        self.goal = cfg.image.goal_image
        self.film = None
        if cfg.image.film:  # zero at init: the stem starts unmodulated
            self.film = nn.Linear(self.text.dim, 2 * sum(cfg.image.stem_channels))
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self._stem = [stem]  # shared with the observation encoder; a list so it is not registered twice
        if self.goal:
            self.goal_pos = _init_pos(stem.num_patches, width)

    @property
    def num_tokens(self) -> int:
        return self.num_text + (self._stem[0].num_patches if self.goal else 0)

    def encode(
        self, texts: list[str], goal_image: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Task tokens [B, L, D] and the stem's FiLM parameters [B, 2 * sum(stem_channels)] (None
        without `image.film`), both from one lookup of the instruction embeddings."""
        emb = self.text(list(texts)).to(self.pos.device)  # [B, E]
        film = None if self.film is None else self.film(emb)  # [B, F]
        tokens = self.proj(emb).view(len(texts), self.num_text, -1) + self.pos  # [B, L, D]
        if not self.goal:
            return tokens, film
        if goal_image is None:
            raise VlaforgeError(
                f"this policy is goal-conditioned: the batch needs {GOAL_IMAGE!r} [B, H, W, C]"
            )
        goal = self._stem[0](goal_image) + self.goal_pos  # [B, P, D]
        return torch.cat([tokens, goal], dim=1), film  # [B, L + P, D]

    def forward(self, texts: list[str], goal_image: torch.Tensor | None = None) -> torch.Tensor:
        """Task tokens [B, L, D] (`encode` without the FiLM parameters)."""
        return self.encode(texts, goal_image)[0]


class ObservationEncoder(nn.Module):
    """Camera frames [B, T, H, W, C] per camera + normalized proprio [B, T, S] -> [B, T, K, D]."""

    def __init__(self, cfg: PolicyConfig, stem: ImageStem) -> None:
        super().__init__()
        width, history = cfg.trunk.width, cfg.history
        self.stem = stem
        self.cameras = cfg.cameras
        self.image_pos = _init_pos(len(cfg.cameras), history, stem.num_patches, width)
        self.state = linear(cfg.state_dim, width, embodiment_count(cfg)) if cfg.state_dim > 0 else None
        if self.state is not None:
            self.state_pos = _init_pos(history, width)

    @property
    def tokens_per_step(self) -> int:
        return len(self.cameras) * self.stem.num_patches + (1 if self.state is not None else 0)

    def token_mask(self, camera_mask: torch.Tensor) -> torch.Tensor:
        """`camera_mask` [B, C] (True = the slot has an image) -> per-step token mask [B, K]."""
        tokens = camera_mask.bool().repeat_interleave(self.stem.num_patches, dim=1)  # [B, C*P]
        if self.state is None:
            return tokens
        return torch.cat([tokens, tokens.new_ones(tokens.shape[0], 1)], dim=1)  # [B, K]

    def forward(
        self,
        images: list[torch.Tensor],
        state: torch.Tensor | None,
        embodiment: torch.Tensor | None = None,
        film: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`film` [B, F]: the task's FiLM parameters (`TaskEncoder.encode`), the same for every
        camera and step."""
        b, t = images[0].shape[:2]
        film = None if film is None else film.repeat_interleave(t, dim=0)  # [B*T, F]
        tokens = torch.stack([self.stem(im.flatten(0, 1), film) for im in images])  # [C, B*T, P, D]
        tokens = tokens.view(len(images), b, t, self.stem.num_patches, -1)  # [C, B, T, P, D]
        tokens = tokens + self.image_pos[:, None, -t:]  # the last t steps' embeddings
        groups = list(tokens.unbind(0))  # C x [B, T, P, D]
        if self.state is not None:
            proprio = apply_linear(self.state, state, embodiment)  # [B, T, D]
            groups.append((proprio + self.state_pos[-t:])[:, :, None])  # [B, T, 1, D]
        return torch.cat(groups, dim=2)  # [B, T, K, D]
