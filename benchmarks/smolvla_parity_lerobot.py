"""Build LeRobot's own SmolVLA at a tiny random configuration, offline, and record its actions.

Runs in the LeRobot side environment (`benchmarks/smolvla_parity.sh` creates it), not in vlaforge's:

    /tmp/vlm-lerobot-venv/bin/python benchmarks/smolvla_parity_lerobot.py --out DIR

Writes into DIR:
- `vlm/`: the tiny SmolVLM folder LeRobot's `vlm_model_name` points at (config.json, tokenizer
  files, preprocessor_config.json) - the offline stand-in for the Hub's SmolVLM2 repository;
- `lerobot/`: `SmolVLAPolicy.save_pretrained` (config.json + model.safetensors), weights random
  with every tensor perturbed (norm weights too, so a wrong mapping cannot hide);
- `io.safetensors`: the observation (uint8 frames, state, token ids + mask), the noise and
  LeRobot's sampled actions, plus LeRobot's preprocessed image tensor.

Offline shims (LeRobot itself is unmodified):
- a stand-in `torchvision` package on sys.path: LeRobot's dataset/processor modules import
  `torchvision.transforms` at import time, and no CPU torchvision wheel exists for torch 2.13;
  nothing of it runs for SmolVLA;
- `lerobot.policies.groot` (imported eagerly by `lerobot.policies`, fails under transformers 5)
  is an empty stand-in module;
- `transformers.AutoProcessor.from_pretrained` (as imported by LeRobot's smolvlm_with_expert) returns
  a namespace holding the folder's tokenizer: transformers' SmolVLMProcessor needs torchvision for
  its video processor; SmolVLA uses only `processor.tokenizer.fake_image_token_id` /
  `global_image_token_id`, which the shim sets from the tokenizer's vocabulary.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
import textwrap
import types
from pathlib import Path

TORCHVISION_SHIM = """
class _Anything:
    def __init__(self, *a, **k): pass
    def __getattr__(self, name): return _Anything()
    def __call__(self, *a, **k): return _Anything()
    def __mro_entries__(self, bases): return (object,)
import sys as _sys, types as _types
transforms = _Anything()
io = _Anything()
for _name in ("transforms", "transforms.v2", "transforms.v2.functional", "transforms.functional", "io", "ops"):
    _mod = _types.ModuleType("torchvision." + _name)
    _mod.__getattr__ = lambda name: _Anything()
    _sys.modules["torchvision." + _name] = _mod
__version__ = "0.0-shim"
"""

NOISE_SEED = 1234
STUBBED = {"groot": "GrootConfig"}
SPECIALS = ["<pad>", "<unk>", "<fake_token_around_image>", "<image>", "<global-img>"]


def install_torchvision_shim() -> None:
    root = Path(tempfile.mkdtemp(prefix="tv-shim-"))
    (root / "torchvision").mkdir()
    (root / "torchvision" / "__init__.py").write_text(textwrap.dedent(TORCHVISION_SHIM))
    sys.path.insert(0, str(root))


def write_vlm_folder(folder: Path) -> None:
    """config.json (SmolVLM, Llama text 6 layers x 64, SigLIP 2 x 32 at 64 px), tokenizer, preprocessor."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig

    vocab = {t: i for i, t in enumerate(SPECIALS + list(dict.fromkeys(string.printable)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(folder)
    config = SmolVLMConfig(
        text_config=dict(
            model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=len(vocab),
            rms_norm_eps=1e-5, pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=64, patch_size=8,
        ),
        scale_factor=2,
    )  # fmt: skip
    config.save_pretrained(folder)
    pre = {"image_processor_type": "SmolVLMImageProcessor", "do_rescale": True, "rescale_factor": 1 / 255,
           "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
           "size": {"longest_edge": 64}}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))


def stub_other_policies(names: dict[str, str]) -> None:
    """Empty stand-ins for LeRobot policies that `lerobot.policies` imports eagerly but whose
    modules do not import under transformers 5 (their configs subclass PretrainedConfig as a plain
    class); SmolVLA does not use them."""
    for package, config_class in names.items():
        for name in (f"lerobot.policies.{package}", f"lerobot.policies.{package}.configuration_{package}"):
            module = types.ModuleType(name)
            setattr(module, config_class, type(config_class, (), {}))
            sys.modules[name] = module


def shim_processor() -> None:
    import lerobot.policies.smolvla.smolvlm_with_expert as swe
    from transformers import AutoTokenizer

    def from_pretrained(model_id, *args, **kwargs):
        tok = AutoTokenizer.from_pretrained(model_id)
        tok.fake_image_token_id = tok.convert_tokens_to_ids("<fake_token_around_image>")
        tok.global_image_token_id = tok.convert_tokens_to_ids("<global-img>")
        return types.SimpleNamespace(tokenizer=tok)

    swe.AutoProcessor = types.SimpleNamespace(from_pretrained=from_pretrained)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import transformers.modeling_utils  # noqa: F401  (decides torchvision is absent before the shim exists)

    install_torchvision_shim()
    stub_other_policies(STUBBED)
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    out = args.out
    (out / "vlm").mkdir(parents=True, exist_ok=True)
    write_vlm_folder(out / "vlm")
    shim_processor()
    torch.manual_seed(args.seed)
    config = SmolVLAConfig(
        vlm_model_name=str(out / "vlm"), load_vlm_weights=False, num_vlm_layers=4,
        chunk_size=50, n_action_steps=10, max_state_dim=32, max_action_dim=32,
        resize_imgs_with_padding=(64, 64), device="cpu",
        input_features={
            "observation.images.corner2": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 48, 64)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(4,))},
    )  # fmt: skip
    policy = SmolVLAPolicy(config).eval()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    policy.save_pretrained(out / "lerobot")

    g = torch.Generator().manual_seed(args.seed + 1)
    b = 2
    frames = torch.randint(0, 256, (b, 48, 64, 3), generator=g, dtype=torch.uint8)  # non-square: padded
    state = torch.randn(b, 4, generator=g)
    tasks = ["reach the red goal\n", "push the puck\n"]
    tok = AutoTokenizer.from_pretrained(out / "vlm")
    enc = tok(tasks, max_length=config.tokenizer_max_length, truncation=True, padding="longest",
              padding_side="right", return_tensors="pt")  # fmt: skip
    # The noise vlaforge's sampler draws from torch.Generator().manual_seed(NOISE_SEED) on the CPU.
    noise_gen = torch.Generator().manual_seed(NOISE_SEED)
    noise = torch.randn(b, config.chunk_size, config.max_action_dim, generator=noise_gen)
    batch = {
        "observation.images.corner2": frames.permute(0, 3, 1, 2).float() / 255.0,  # [B, C, H, W] in [0, 1]
        "observation.state": state,
        "observation.language.tokens": enc["input_ids"],
        "observation.language.attention_mask": enc["attention_mask"].bool(),
    }
    with torch.no_grad():
        images, img_masks = policy.prepare_images(batch)
        lstate = policy.prepare_state(batch)
        actions = policy.model.sample_actions(
            images, img_masks, enc["input_ids"], enc["attention_mask"].bool(), lstate, noise=noise
        )
    save_file(
        {
            "frames": frames.contiguous(), "state": lstate.contiguous(), "ids": enc["input_ids"].contiguous(),
            "mask": enc["attention_mask"].contiguous(), "noise": noise.contiguous(),
            "actions": actions.contiguous(), "pixels": images[0].contiguous(),
        },
        str(out / "io.safetensors"),
    )  # fmt: skip
    (out / "tasks.json").write_text(json.dumps(tasks))
    print(f"wrote {out}: actions {list(actions.shape)}")


if __name__ == "__main__":
    main()
