"""Suite-wide settings: headless rendering, offline hub, one torch thread."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# Tiny test models gain nothing from threads and lose a lot when the cores are busy.
torch.set_num_threads(1)
