"""A tiny character tokenizer for the random SmolVLM configuration (no files, no Hub).

The tiny `smolvla-tiny` backbone has no pretrained tokenizer, so it gets one built in-process with
`tokenizers`: a WordLevel model over single characters (printable ASCII + newline), with SmolVLM's
special tokens first. It is deterministic (the same vocabulary on every machine, so a checkpoint
reloads with the same ids), has no normalizer and adds no BOS/EOS (as SmolVLM's tokenizer adds none).
"""

from __future__ import annotations

import string
from functools import lru_cache

SPECIAL_TOKENS = ("<pad>", "<unk>", "<fake_token_around_image>", "<image>", "<global-img>")
CHARACTERS = tuple(dict.fromkeys(string.printable))  # 100 printable ASCII characters incl. \n


def vocabulary(special: tuple[str, ...] = SPECIAL_TOKENS) -> dict[str, int]:
    """token -> id: the special tokens, then one id per character."""
    return {tok: i for i, tok in enumerate((*special, *CHARACTERS))}


@lru_cache(maxsize=4)
def char_tokenizer(special: tuple[str, ...] = SPECIAL_TOKENS, **roles: str):
    """A transformers `PreTrainedTokenizerFast` over `vocabulary(special)` (pad = "<pad>", right
    padding); `roles` name further special tokens (e.g. bos_token="<s>", eos_token="</s>"), which
    are never added to the text by the tokenizer itself."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocabulary(special), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", **roles)
    fast.padding_side = "right"
    return fast
