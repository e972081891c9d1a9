"""What LeRobot 0.4.4 needs from torchvision on a CPU-only torch, for the peer benchmark's side venv.

PyPI's torchvision 0.28 (the release for torch 2.13) is a CUDA build: its C++ ops (`_C.so`) link
libtorch_cuda and cannot load against the CPU torch of these machines. Its Python half (the ResNet
that ACT and Diffusion Policy use as vision backbone, `FrozenBatchNorm2d`, the transforms) needs
none of them, but `import torchvision` registers fake kernels for two ops it expects `_C.so` to have
defined and fails. `install()` defines those two schemas (no kernel: calling `nms` still fails, and
nothing here calls it) and gives `torchvision.io` the `VideoReader` LeRobot's "pyav" video backend
reads frames with (torchvision 0.28 dropped it): seek, then iterate `{"data": uint8 CHW, "pts": s}`
the way torchvision's PyAV reader did. Everything else is LeRobot's and torchvision's own code.

Import this module before LeRobot (the peer scripts call `install()` first).
"""

from __future__ import annotations


def install() -> None:
    import torch

    global _LIB
    if "_LIB" not in globals():
        _LIB = torch.library.Library("torchvision", "DEF")  # kept alive: the schemas live with it
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision.io

    torchvision.io.VideoReader = VideoReader
    if not hasattr(torchvision, "set_video_backend"):
        torchvision.set_video_backend = lambda name: None


class VideoReader:
    """torchvision's `VideoReader(path, "video")` on PyAV: `seek(ts)` then iterate decoded frames."""

    def __init__(self, path: str, stream: str = "video") -> None:
        import av

        self.container = av.open(str(path))
        self._stream = self.container.streams.video[0]

    def seek(self, ts: float, keyframes_only: bool = True) -> VideoReader:
        offset = int(ts / self._stream.time_base)
        self.container.seek(offset, stream=self._stream, any_frame=not keyframes_only, backward=True)
        return self

    def __iter__(self):
        import torch

        for frame in self.container.decode(self._stream):
            data = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)  # [C, H, W]
            yield {"data": data, "pts": float(frame.pts * self._stream.time_base)}

    def __del__(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            container.close()
