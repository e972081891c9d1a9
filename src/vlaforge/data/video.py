"""MP4 video I/O with PyAV: encode episodes, decode whole files or one episode's time range.

Encoding defaults to H.264 (`libx264`, crf 10, GOP 8, no B-frames) in **yuv444p** (High 4:4:4
profile): fast to encode and decode on a laptop CPU, and read by every FFmpeg build (so by LeRobot's
torchcodec and pyav backends). Deviation from LeRobot's default (AV1 `libsvtav1`, yuv420p, crf 30,
GOP 2), measured on Meta-World renders: chroma subsampling alone (yuv420p) caps the round trip at
~33 dB PSNR at 128 px and ~30 dB at 64 px (small, sharp, coloured objects), below the 35 dB we
promise; yuv444p at crf 10 gives ~39 dB at 128 px and ~37.6 dB at 64 px for ~0.5-1.5 KB per frame.
Browsers' built-in players do not play 4:4:4 H.264; pass `pix_fmt="yuv420p"` (and e.g.
`codec="libsvtav1"`) where that matters more than fidelity.
Decoding works for any codec FFmpeg knows (the LeRobot fixture is AV1, decoded by libdav1d).

Frames are uint8 RGB `[T, H, W, 3]`. Frame `k` of a file lies at `k / fps` seconds; an episode
stored inside a larger file starts at its `from_timestamp` (LeRobot v3) and frame `k` of it lies at
`from_timestamp + k / fps`. Writes are atomic: encode to a temporary name, then `os.replace`.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from vlaforge.errors import VlaforgeError

DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 10  # round trip ~39 dB PSNR on 128 px Meta-World renders (issue: >= 35 dB)
DEFAULT_PIX_FMT = "yuv444p"
DEFAULT_GOP = 8  # our loader never seeks; LeRobot's random access likes 2 (files ~1.9x bigger)


def _codec_options(codec: str, crf: int, gop: int) -> dict[str, str]:
    options = {"g": str(gop), "crf": str(crf)}
    if codec == "libx264":
        # threads=1: x264's frame threads made the first video a collecting process wrote differ (in
        # its bits and decoded pixels) from the same frames encoded later; one thread is repeatable,
        # and our frames are small (the collector's main process encodes while the workers render).
        options.update({"preset": "veryfast", "bf": "0", "threads": "1"})
    elif codec == "libsvtav1":
        options["preset"] = "12"
    return options


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: int,
    *,
    codec: str = DEFAULT_CODEC,
    crf: int = DEFAULT_CRF,
    gop: int = DEFAULT_GOP,
    pix_fmt: str = DEFAULT_PIX_FMT,
) -> Path:
    """Encode uint8 `[T, H, W, 3]` frames to `path` (atomically); returns the path."""
    path = Path(path)
    frames = _check_frames(frames)
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise VlaforgeError(f"video frames must have even height and width, got {height}x{width}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.mp4")
    try:
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream(codec, rate=int(fps), options=_codec_options(codec, crf, gop))
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for image in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VlaforgeError(
            f"video frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {list(frames.shape)}"
        )
    return np.ascontiguousarray(frames)


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise VlaforgeError(f"video file {str(path)!r} does not exist")
    try:
        container = av.open(str(path))
        container.streams.video[0].thread_type = "AUTO"
        return container
    except (av.FFmpegError, IndexError) as exc:
        raise VlaforgeError(f"cannot read video {str(path)!r}: {exc}") from exc


def read_mp4(path: str | Path) -> np.ndarray:
    """Decode every frame of a video to uint8 `[T, H, W, 3]` at its stored size (to change the size,
    use `vlaforge.image.resize`, the one resize)."""
    with _open(path) as container:
        try:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        except av.FFmpegError as exc:
            raise VlaforgeError(f"corrupt video {str(path)!r}: {exc}") from exc
    if not frames:
        raise VlaforgeError(f"video {str(path)!r} has no frames")
    return np.stack(frames)


def read_mp4_ranges(
    path: str | Path,
    ranges: list[tuple[float, int]],
    fps: float,
    *,
    out: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Decode the file once and cut it into episodes.

    `ranges` holds `(from_timestamp, length)` per episode; frame `k` of an episode is the decoded
    frame whose timestamp rounds to the same frame slot as `from_timestamp + k / fps`. Returns one
    uint8 `[length, H, W, 3]` array per range, written into `out` when given (e.g. slices of a
    memory-mapped cache, so a long file never sits in RAM). Refused: a file whose own frame rate is
    not `fps` (a wrong fps in meta/info.json would put several decoded frames on one slot and leave
    others unwritten), a frame size other than `out`'s, and a range with fewer distinct frames
    than its length (a corrupt or truncated video).
    """
    slots: dict[int, list[tuple[int, int]]] = {}
    for r, (start, length) in enumerate(ranges):
        for k in range(length):
            slots.setdefault(round(start * fps) + k, []).append((r, k))
    filled = [np.zeros(length, dtype=bool) for _, length in ranges]
    with _open(path) as container:
        stream = container.streams.video[0]
        _check_rate(path, stream, fps)
        if out is None:
            out = [np.empty((length, stream.height, stream.width, 3), np.uint8) for _, length in ranges]
        _check_size(path, stream, out)
        try:
            for frame in container.decode(stream):
                targets = slots.get(round(float(frame.pts * stream.time_base) * fps), ())
                if targets:
                    image = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                    for r, k in targets:
                        out[r][k] = image
                        filled[r][k] = True
        except av.FFmpegError as exc:
            raise VlaforgeError(f"corrupt video {str(path)!r}: {exc}") from exc
    for (start, length), got in zip(ranges, filled, strict=True):
        if not got.all():
            raise VlaforgeError(
                f"video {str(path)!r} has {int(got.sum())} distinct frames of the {length} expected from "
                f"t={start:.4f}s at {fps:g} fps (corrupt or truncated video?)"
            )
    return out


def frame_rate(stream) -> float:
    """A video stream's own frame rate (average, else the container's base rate); 0 when unknown."""
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _check_rate(path: str | Path, stream, fps: float) -> None:
    rate = frame_rate(stream)
    if rate and abs(rate - fps) > 0.01 * rate:
        raise VlaforgeError(
            f"video {str(path)!r} runs at {rate:g} fps but the dataset says fps {fps:g} "
            "(fix fps in meta/info.json)"
        )


def _check_size(path: str | Path, stream, out: list[np.ndarray]) -> None:
    shapes = {tuple(o.shape[1:3]) for o in out if len(o)}
    if shapes and shapes != {(stream.height, stream.width)}:
        expected = "x".join(str(v) for v in next(iter(shapes)))
        raise VlaforgeError(
            f"video {str(path)!r} has {stream.height}x{stream.width} frames, the dataset says {expected}"
        )


def video_info(path: str | Path) -> dict:
    """The `info` block LeRobot stores for a video feature in meta/info.json."""
    with _open(path) as container:
        stream = container.streams.video[0]
        info = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": round(frame_rate(stream)),
            "video.channels": 3,
            "has_audio": len(container.streams.audio) > 0,
        }
    return info


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of the same shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
