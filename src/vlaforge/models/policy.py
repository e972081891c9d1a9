"""`VLAPolicy` = tokenizers + block-wise trunk + one action head, with normalization, save and load.

Conventions (see `vlaforge.keys` for the batch keys):
- inputs are in robot units; the policy normalizes state and actions per `dataset_index` with its
  own buffers (`vlaforge.models.normalize`) and returns `sample_actions` in robot units;
- a batch may carry fewer history steps than `history` (the last position embeddings are used) or
  more (the last `history` are kept); a chunk longer than `chunk` is cut to `chunk`;
- state/action narrower than `state_dim`/`action_dim` (a smaller robot) is zero-padded and masked;
  `action_dim_mask`/`state_dim_mask` (True = real) and `action_is_pad` (True = padding) give the
  head `action_mask [B, H, A] = ~action_is_pad & action_dim_mask`;
- numpy arrays are accepted wherever tensors are (the server passes numpy).

Checkpoint directory (`save_pretrained` / `from_pretrained`): `config.json` (`to_dict(config)`),
`model.safetensors` (all trainable weights and the normalization buffers; NOT the frozen text
encoder, which is reloaded from `config.language.model`), `stats.json` (the per-dataset stats list
the normalization was built from) and `metadata.json` (the `CheckpointRecord` of `vlaforge.models.io`:
cameras and frame sizes, embodiments, episode split, training seeds; `policy.record` parses it; an
ar-fast policy's fitted FAST tokenizer as JSON under "action_tokenizer", so every path that copies
metadata.json - INT8 export, serve, eval - has it). A checkpoint whose tensors do not match its
config fails with a `VlaforgeError` naming the tensor; nothing is partly loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vlaforge import keys
from vlaforge.config import from_dict, pretrained_dir, to_dict
from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones import Backbone, TrunkBackbone, build_vlm, no_pretrained_weights
from vlaforge.models.config import PolicyConfig, embodiment_count, validate
from vlaforge.models.encoders import GOAL_IMAGE, ImageStem, ObservationEncoder, TaskEncoder
from vlaforge.models.heads import build_head
from vlaforge.models.heads.base import TrunkOutput
from vlaforge.models.io import CheckpointRecord
from vlaforge.models.language import text_model_parameters
from vlaforge.models.normalize import Normalizer, jsonable_stats
from vlaforge.models.tokenizers import TOKENIZER_KEY, ActionTokenizer, load_tokenizer, tokenizer_from_dict
from vlaforge.models.trunk import Trunk

CONFIG_FILE, WEIGHTS_FILE, STATS_FILE, METADATA_FILE = (
    "config.json",
    "model.safetensors",
    "stats.json",
    "metadata.json",
)
NORM_PREFIXES = ("action_norm.", "state_norm.")


def _tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if device is None else t.to(device)


def _pad_last(x: torch.Tensor, size: int, what: str) -> torch.Tensor:
    """Zero-pad the last dim of x up to `size` (a smaller robot); wider than `size` is an error."""
    if x.shape[-1] > size:
        raise VlaforgeError(f"{what} has {x.shape[-1]} dims but the policy was built for {size}")
    return torch.nn.functional.pad(x, (0, size - x.shape[-1])) if x.shape[-1] < size else x


def _dim_mask(mask: Any, real: int, batch: int, size: int, dev: torch.device) -> torch.Tensor:
    """The per-dimension mask [B, size] (True = a real dim): the batch's own, padded with False when
    the policy is wider than the data (a fine-tuned generalist keeps its padded widths); else the
    first `real` dims."""
    if mask is None:
        return (torch.arange(size, device=dev) < real).expand(batch, -1)
    mask = _tensor(mask, dev).bool()  # [B, S'] with S' <= size
    return torch.nn.functional.pad(mask, (0, size - mask.shape[-1]), value=False)


class VLAPolicy(nn.Module):
    """A vision-language-action policy (see the module docstring for conventions)."""

    def __init__(
        self,
        config: PolicyConfig,
        stats: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        cfg = self.config = validate(config)
        stats = [stats] if isinstance(stats, dict) else stats  # one dataset's stats dict is accepted
        self.stats = jsonable_stats(stats)
        self.metadata = dict(metadata or {})
        self.action_norm = Normalizer(
            keys.ACTION, cfg.action_dim, stats, cfg.normalization, cfg.raw_action_dims
        )
        self.state_norm = Normalizer(keys.STATE, cfg.state_dim, stats, cfg.normalization, cfg.raw_state_dims)
        if cfg.backbone.kind == "trunk":  # today's modules, under their checkpoint names
            stem = ImageStem(cfg)
            self.obs_encoder = ObservationEncoder(cfg, stem)  # owns the (shared) stem
            self.task_encoder = TaskEncoder(cfg, stem)
            self.head = build_head(
                cfg.head, cfg.trunk.width, cfg.action_dim, cfg.chunk, embodiment_count(cfg)
            )
            self.trunk = Trunk(cfg.trunk, self.head.num_readouts)
            self.backbone: Backbone = TrunkBackbone(self.obs_encoder, self.task_encoder, self.trunk)
        else:  # a transformers VLM (`backbone.*` tensors) and the head built on its layout
            self.backbone, self.head = build_vlm(cfg)
        self._attach_tokenizer()

    # ------------------------------------------------------------------ action tokenizer
    @property
    def needs_tokenizer(self) -> bool:
        """True for a head whose action tokenizer still has to be fitted on data (a fresh ar-fast)."""
        tokenizer = getattr(self.head, "tokenizer", None)
        return tokenizer is not None and not tokenizer.fitted

    def _attach_tokenizer(self) -> None:
        """The fitted tokenizer from metadata[TOKENIZER_KEY] (a checkpoint), else from the file in
        `config.head.tokenizer`; without either an ar-fast policy waits for `set_action_tokenizer`."""
        if not self.needs_tokenizer:
            return
        saved = self.metadata.get(TOKENIZER_KEY)
        if saved is not None:
            self.set_action_tokenizer(tokenizer_from_dict(saved, where="metadata.json action_tokenizer"))
        elif self.config.head.tokenizer:
            self.set_action_tokenizer(load_tokenizer(self.config.head.tokenizer))

    def set_action_tokenizer(self, tokenizer: ActionTokenizer) -> None:
        """Give the head its fitted tokenizer; it is saved with the checkpoint (metadata.json)."""
        self.head.set_tokenizer(tokenizer)
        self.metadata[TOKENIZER_KEY] = tokenizer.to_dict()

    # ------------------------------------------------------------------ forward
    @property
    def device(self) -> torch.device:
        return self.action_norm.center.device

    @property
    def record(self) -> CheckpointRecord:
        """What the checkpoint knows of its training data, parsed from `metadata` (`vlaforge.models.io`)."""
        return CheckpointRecord.from_metadata(self.metadata)

    def encode(self, observation: dict[str, Any]) -> TrunkOutput:
        """Observation (images uint8 [B,T,H,W,C], state [B,T,S], task) -> trunk output."""
        cfg, dev = self.config, self.device
        keep = slice(-cfg.history, None)  # the last `history` steps
        images, camera_mask = self._images(observation, keep)
        b = images[0].shape[0]
        index = observation.get(keys.DATASET_INDEX)
        index = None if index is None else _tensor(index, dev).reshape(-1)
        state = self._state(observation, index, keep, dev) if cfg.state_dim > 0 else None
        task = observation.get(keys.TASK, "")
        texts = [task] * b if isinstance(task, str) else list(task)
        goal = observation.get(GOAL_IMAGE)
        pad = observation.get(keys.OBS_IS_PAD)
        pad = None if pad is None else _tensor(pad, dev)[:, keep].bool()  # [B, T]
        goal = None if goal is None else _tensor(goal, dev)
        mask = None if camera_mask is None else camera_mask.to(dev)
        return self.backbone.encode(images, texts, state, pad, goal, camera_mask=mask, embodiment=index)

    def _images(
        self, observation: dict[str, Any], keep: slice
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Per camera slot uint8 [B, T, H, W, C] and `camera_mask` [B, C] (None: all present). A slot
        the observation lacks is allowed only where `camera_mask` marks it missing; it gets black
        frames whose tokens the trunk never attends to."""
        cams = self.config.cameras
        mask = observation.get(keys.CAMERA_MASK)
        mask = None if mask is None else _tensor(mask).bool()
        if mask is not None and (mask.dim() != 2 or mask.shape[1] != len(cams)):
            raise VlaforgeError(f"{keys.CAMERA_MASK} must be [B, {len(cams)}], got {list(mask.shape)}")
        images: list[torch.Tensor | None] = []
        for j, cam in enumerate(cams):
            key = keys.image_key(cam)
            if key not in observation:
                if mask is None or bool(mask[:, j].any()):
                    raise VlaforgeError(f"the observation lacks {key!r} (policy camera slots: {cams})")
                images.append(None)
                continue
            frames = _tensor(observation[key])
            if frames.dim() != 5 or frames.shape[-1] != 3:
                raise VlaforgeError(f"{key} must be [B, T, H, W, 3], got {list(frames.shape)}")
            images.append(frames[:, keep])  # [B, T, H, W, C]
        real = next((im for im in images if im is not None), None)
        if real is None:
            raise VlaforgeError(f"the observation has none of the policy's camera slots {cams}")
        return [torch.zeros_like(real) if im is None else im for im in images], mask

    def _state(
        self, obs: dict[str, Any], index: torch.Tensor | None, keep: slice, dev: torch.device
    ) -> torch.Tensor:
        if keys.STATE not in obs:
            raise VlaforgeError(f"the observation lacks {keys.STATE!r} (state_dim={self.config.state_dim})")
        raw = _tensor(obs[keys.STATE], dev).float()[:, keep]  # [B, T, S']
        real = raw.shape[-1]
        state = self.state_norm.normalize(
            _pad_last(raw, self.config.state_dim, keys.STATE), index
        )  # [B, T, S]
        dim_mask = _dim_mask(obs.get(keys.STATE_DIM_MASK), real, state.shape[0], state.shape[-1], dev)
        return state * dim_mask[:, None, :]  # padded dims -> 0

    def normalized_targets(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """What the head trains on: normalized actions [B, H, A] (0 where masked) and action_mask."""
        return self._targets(batch)

    def _targets(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized actions [B, H, A] (0 where masked) and the head's action_mask [B, H, A]."""
        cfg, dev = self.config, self.device
        raw = _tensor(batch[keys.ACTION], dev).float()  # [B, H', A']
        if raw.shape[1] < cfg.chunk:
            raise VlaforgeError(
                f"the batch has action chunks of {raw.shape[1]} steps; the policy needs {cfg.chunk}"
            )
        raw, real = raw[:, : cfg.chunk], raw.shape[-1]
        index = batch.get(keys.DATASET_INDEX)
        index = None if index is None else _tensor(index, dev).reshape(-1)
        actions = self.action_norm.normalize(_pad_last(raw, cfg.action_dim, keys.ACTION), index)  # [B, H, A]
        b, h, a = actions.shape
        dim_mask = _dim_mask(batch.get(keys.ACTION_DIM_MASK), real, b, a, dev)  # [B, A]
        is_pad = batch.get(keys.ACTION_IS_PAD)
        is_pad = torch.zeros(b, h, dtype=torch.bool, device=dev) if is_pad is None else _tensor(is_pad, dev)
        mask = ~is_pad.bool()[:, : cfg.chunk, None] & dim_mask.bool()[:, None, :]  # [B, H, A]
        return torch.where(mask, actions, torch.zeros_like(actions)), mask

    def compute_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss (scalar) and float metrics for one batch (keys of `vlaforge.keys`)."""
        actions, mask = self._targets(batch)
        return self.head.loss(self.encode(batch), actions, mask)

    @torch.no_grad()
    def sample_actions(
        self, observation: dict[str, Any], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Actions [B, H, A] in robot units (the observation is encoded once per call)."""
        normalized = self.head.sample(self.encode(observation), 1, generator)  # [B, H, A]
        index = observation.get(keys.DATASET_INDEX)
        index = None if index is None else _tensor(index, self.device).reshape(-1)
        return self.action_norm.unnormalize(normalized, index)

    def reset(self) -> None:
        """Forget per-episode state: a no-op, the model keeps none (observation windows live in
        `vlaforge.models.io.ObservationWindow`, one per environment or connection)."""

    def num_parameters(self) -> dict[str, int]:
        """{"trainable": ..., "frozen_text": ...} (the text encoder is not part of the module)."""
        trainable = sum(p.numel() for p in self.parameters())
        trunk = self.config.backbone.kind == "trunk"  # a VLM backbone has no separate text encoder
        return {
            "trainable": trainable,
            "frozen_text": text_model_parameters(self.config.language.model) if trunk else 0,
        }

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, model.safetensors, stats.json, metadata.json (see module doc)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            self._write_files(tmp)
            if not directory.exists():
                os.replace(tmp, directory)  # a new checkpoint appears whole or not at all
                return directory
            for name in (WEIGHTS_FILE, STATS_FILE, METADATA_FILE, CONFIG_FILE):  # each file atomic
                os.replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    def _write_files(self, out: Path) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "vlaforge"})
        for name, data in (
            (STATS_FILE, self.stats),
            (METADATA_FILE, self.metadata),
            (CONFIG_FILE, to_dict(self.config)),
        ):
            (out / name).write_text(json.dumps(data, indent=2, default=_json_default))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> VLAPolicy:
        """Load a checkpoint directory (or a Hub id already in the local cache); eval mode."""
        directory = resolve_checkpoint(path)
        config = from_dict(PolicyConfig, read_json(directory / CONFIG_FILE), where="config")
        stats = read_json(directory / STATS_FILE) if (directory / STATS_FILE).exists() else None
        metadata = read_json(directory / METADATA_FILE) if (directory / METADATA_FILE).exists() else {}
        with no_pretrained_weights():  # every weight comes from the checkpoint
            policy = cls(config, stats=stats, metadata=metadata)
        policy.load_checked(read_weights(directory), where=str(directory))
        return policy.to(device).eval() if device is not None else policy.eval()

    def load_checked(self, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
        """Load `state` exactly: any missing, unexpected or mis-shaped tensor is a VlaforgeError."""
        own = self.state_dict()
        for key, value in own.items():
            if key not in state:
                raise VlaforgeError(f"{where}: missing tensor {key!r} that its config needs")
            if tuple(state[key].shape) != tuple(value.shape):
                raise VlaforgeError(
                    f"{where}: tensor {key!r} has shape {list(state[key].shape)} but its config gives {list(value.shape)}"
                )
        extra = sorted(set(state) - set(own))
        if extra:
            raise VlaforgeError(
                f"{where}: unexpected tensor {extra[0]!r} (not in the model its config builds)"
            )
        self.load_state_dict(state, strict=True)

    def load_state_dict_partial(
        self, state: dict[str, torch.Tensor], strict_shapes: bool = False
    ) -> list[str]:
        """Fine-tuning load: copy every tensor whose name and shape fit; return the names left at
        their fresh initialisation (new input/output layers). Normalization buffers are never copied
        (the new policy's stats rule). With `strict_shapes`, a shape mismatch is a VlaforgeError."""
        own = self.state_dict()
        fits, fresh = {}, []
        for key, value in own.items():
            if key.startswith(NORM_PREFIXES):
                continue
            if key in state and tuple(state[key].shape) == tuple(value.shape):
                fits[key] = state[key]
                continue
            if strict_shapes and key in state:
                raise VlaforgeError(
                    f"tensor {key!r}: checkpoint shape {list(state[key].shape)} != {list(value.shape)}"
                )
            fresh.append(key)
        self.load_state_dict(fits, strict=False)
        return fresh


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value).tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_json(path: Path, kind: str = "policy checkpoint") -> Any:
    """A JSON file of a checkpoint (or export); missing or malformed files are user errors."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise VlaforgeError(f"{path.parent}: not a {kind} (no {path.name})") from err
    except json.JSONDecodeError as err:
        raise VlaforgeError(f"{path}: not valid JSON ({err})") from err


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A local checkpoint directory for `path`: a directory, the name of a policy `vlaforge pretrain`
    published (`base`: `vlaforge.config.pretrained_dir`), or a Hub id in the local cache."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    name = str(path)
    if not local.exists() and name and "/" not in name and not name.startswith("."):
        published = pretrained_dir(name)
        if (published / CONFIG_FILE).is_file():
            return published
        have = sorted(p.name for p in published.parent.glob("*") if (p / CONFIG_FILE).is_file())
        raise VlaforgeError(
            f"policy {name!r} is not a checkpoint directory nor a pretrained policy in {published.parent} "
            f"(have: {', '.join(have) or 'none'}; `vlaforge pretrain --recipe {name}` publishes one)"
        )
    if local.exists() or name.count("/") != 1:
        raise VlaforgeError(f"policy {name!r} is not a checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path), local_files_only=True))
    except Exception as err:
        raise VlaforgeError(
            f"policy {str(path)!r} is not a local directory and not in the local Hub cache (offline)"
        ) from err


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of `directory/model.safetensors` (for `load_state_dict_partial` when fine-tuning)."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.exists():
        raise VlaforgeError(f"{directory}: not a policy checkpoint (no {WEIGHTS_FILE})")
    try:
        return load_file(str(path))
    except Exception as err:
        raise VlaforgeError(f"{path}: unreadable weights ({err})") from err
