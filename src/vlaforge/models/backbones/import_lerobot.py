"""Load a LeRobot SmolVLA checkpoint folder (config.json + model.safetensors) into vlaforge.

`import_lerobot_smolvla(folder)` reads LeRobot's `SmolVLAConfig` JSON, builds the equivalent
vlaforge `PolicyConfig` (backbone.kind="smolvlm", head.kind="smolvla-expert") and copies every
tensor under its vlaforge name:

| LeRobot (`SmolVLAPolicy.state_dict`)        | vlaforge (`VLAPolicy.state_dict`)   |
| ------------------------------------------- | ----------------------------------- |
| `model.vlm_with_expert.vlm.*`               | `backbone.vlm.*`                    |
| `model.state_proj.*`                        | `backbone.state_proj.*`             |
| `model.vlm_with_expert.lm_expert.*`         | `head.expert.*`                     |
| `model.action_{in,out}_proj.*`, `model.action_time_mlp_{in,out}.*` | `head.*`     |

State and action keep LeRobot's padded widths (`max_state_dim`, `max_action_dim`): a robot with
fewer dims is zero-padded and masked as in any vlaforge mixture. Normalization stats come from
LeRobot's `*normalizer_processor.safetensors` next to the weights when present (mean/std of
`observation.state` and `action`); otherwise identity. The VLM folder (tokenizer, config) is
LeRobot's `vlm_model_name` unless `vlm_id` names another local folder or cached Hub id.
Settings vlaforge does not implement (image special tokens, a fixed prefix length, ALOHA
adaptations, empty cameras, other attention modes or time periods) are refused with their name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.models.config import BackboneConfig, PolicyConfig
from vlaforge.models.heads import HeadConfig

RENAMES = (
    ("model.vlm_with_expert.vlm.", "backbone.vlm."),
    ("model.state_proj.", "backbone.state_proj."),
    ("model.vlm_with_expert.lm_expert.", "head.expert."),
    ("model.action_", "head.action_"),
)
UNSUPPORTED = {
    "add_image_special_tokens": False, "attention_mode": "cross_attn", "prefix_length": -1,
    "pad_language_to": "longest", "empty_cameras": 0, "adapt_to_pi_aloha": False,
    "min_period": 4e-3, "max_period": 4.0,
}  # fmt: skip


def lerobot_config(folder: Path) -> dict[str, Any]:
    """LeRobot's config.json of a SmolVLA checkpoint; anything else is a one-line error."""
    path = folder / "config.json"
    if not path.exists():
        raise VlaforgeError(f"{folder}: not a LeRobot checkpoint (no config.json)")
    data = json.loads(path.read_text())
    if data.get("type") != "smolvla":
        raise VlaforgeError(f"{path}: a LeRobot {data.get('type')!r} policy, not smolvla")
    for name, value in UNSUPPORTED.items():
        if data.get(name, value) != value:
            raise VlaforgeError(f"{path}: {name}={data[name]!r} is not supported (only {value!r})")
    return data


def policy_config(data: dict[str, Any], vlm_id: str | None = None) -> PolicyConfig:
    """The vlaforge config equivalent to LeRobot's SmolVLA config `data`."""
    images = [k for k, f in data["input_features"].items() if f["type"] == "VISUAL"]
    prefix = keys.image_key("")
    backbone = BackboneConfig(
        kind="smolvlm", id=vlm_id or data["vlm_model_name"],
        num_vlm_layers=max(data["num_vlm_layers"], 0), num_expert_layers=max(data["num_expert_layers"], 0),
        self_attn_every_n_layers=max(data["self_attn_every_n_layers"], 0),
        expert_width_multiplier=data["expert_width_multiplier"], freeze_vision=data["freeze_vision_encoder"],
        train_expert_only=data["train_expert_only"], max_text_tokens=data["tokenizer_max_length"],
    )  # fmt: skip
    return PolicyConfig(
        cameras=tuple(k[len(prefix) :] for k in images), image_size=data["resize_imgs_with_padding"][0],
        history=1, chunk=data["chunk_size"], execute_steps=data["n_action_steps"],
        action_dim=data["max_action_dim"], state_dim=data["max_state_dim"],
        backbone=backbone, head=HeadConfig(kind="smolvla-expert", flow_steps=data["num_steps"]),
    )  # fmt: skip


def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LeRobot tensor names -> vlaforge names (table in the module docstring)."""
    out = {}
    for name, tensor in state.items():
        for old, new in RENAMES:
            if name.startswith(old):
                out[new + name[len(old) :]] = tensor
                break
        else:
            raise VlaforgeError(f"LeRobot tensor {name!r} has no vlaforge counterpart")
    return out


def lerobot_stats(folder: Path) -> dict[str, dict[str, list[float]]] | None:
    """mean/std of state and action from LeRobot's normalizer processor file, if saved."""
    files = sorted(folder.glob("*normalizer_processor.safetensors"))
    if not files:
        return None
    flat = load_file(str(files[0]))
    stats: dict[str, dict[str, list[float]]] = {}
    for key in (keys.STATE, keys.ACTION):
        if f"{key}.mean" in flat and f"{key}.std" in flat:
            stats[key] = {s: flat[f"{key}.{s}"].flatten().tolist() for s in ("mean", "std")}
    return stats or None


def import_lerobot_smolvla(folder: str | Path, vlm_id: str | None = None):
    """A `VLAPolicy` (eval mode) with the weights of LeRobot SmolVLA checkpoint `folder`."""
    from vlaforge.models.backbones.smolvlm import no_pretrained_weights
    from vlaforge.models.policy import VLAPolicy

    folder = Path(folder)
    data = lerobot_config(folder)
    cfg = policy_config(data, vlm_id)
    if not (folder / "model.safetensors").exists():
        raise VlaforgeError(f"{folder}: no model.safetensors")
    stats = lerobot_stats(folder)
    with no_pretrained_weights():
        policy = VLAPolicy(cfg, stats=[stats] if stats else None, metadata={"imported_from": str(folder)})
    state = rename(load_file(str(folder / "model.safetensors")))
    own = policy.state_dict()
    if "backbone.vlm.lm_head.weight" not in state:  # tied to the text embeddings
        state["backbone.vlm.lm_head.weight"] = state["backbone.vlm.model.text_model.embed_tokens.weight"]
    for name in ("action_norm.", "state_norm."):
        state.update({k: v for k, v in own.items() if k.startswith(name)})
    policy.load_checked(state, where=str(folder))
    return policy.eval()
