"""Decode each video once into a memory-mapped uint8 `.npy` frame cache.

Layout: `<base>/<fingerprint>/<video_key>-<H>x<W>.npy`, one `[num_frames, H, W, 3]` array per camera
and resolution, rows in the dataset's `index` order. `<base>` is `<root>/.vlaforge_cache` (LeRobot
ignores it), or `~/.cache/vlaforge/<hash of root>` when the dataset directory is read-only, or
the `cache_dir` the caller gives. The fingerprint hashes meta/info.json and the size and mtime of
every file under meta/, data/ and videos/: any change to the dataset gives a new fingerprint, the
old entries are deleted, and the frames are decoded again. Another size than the stored one is made
from the stored-size cache with `vlaforge.image.resize`, the resize the policy applies at evaluation
and serving time, so both see the same pixels. Files are written under a temporary name
and renamed, so a killed build never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from vlaforge import image
from vlaforge.data import layout
from vlaforge.data.reader import LeRobotV3Dataset


def fingerprint(root: str | Path) -> str:
    """A short hash of the dataset's metadata and the sizes/mtimes of all its files."""
    root = Path(root)
    digest = hashlib.sha256((root / layout.INFO_PATH).read_bytes())
    for sub in ("meta", "data", "videos"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                st = path.stat()
                digest.update(f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_base(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the caches of this dataset live (see module docstring)."""
    root = Path(root).resolve()
    if cache_dir is not None:
        return Path(cache_dir) / hashlib.sha256(str(root).encode()).hexdigest()[:12]
    if os.access(root, os.W_OK):
        return root / layout.CACHE_DIR
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlaforge"
    return home / hashlib.sha256(str(root).encode()).hexdigest()[:12]


def cached_frames(
    dataset: LeRobotV3Dataset,
    video_key: str,
    *,
    size: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Read-only memmap uint8 `[num_frames, H, W, 3]` of one camera, decoding it on first use."""
    stored = tuple(dataset.video_shape[video_key][:2])
    height, width = size or stored
    base = cache_base(dataset.root, cache_dir)
    folder = base / fingerprint(dataset.root)
    path = folder / f"{video_key}-{height}x{width}.npy"
    if not path.is_file():
        _drop_stale(base, keep=folder.name)
        folder.mkdir(parents=True, exist_ok=True)
        if (height, width) == stored:
            _build(
                path,
                (dataset.num_frames, height, width),
                lambda out: dataset.decode_video_into(video_key, out),
            )
        else:
            full = cached_frames(dataset, video_key, cache_dir=cache_dir)  # [N, H0, W0, 3]
            _build(path, (dataset.num_frames, height, width), lambda out: _resize_into(full, out))
    return np.load(path, mmap_mode="r")


def _resize_into(frames: np.ndarray, out: np.ndarray) -> None:
    for start in range(0, len(frames), image.CHUNK):
        out[start : start + image.CHUNK] = image.resize(frames[start : start + image.CHUNK], out.shape[1:3])


def _drop_stale(base: Path, keep: str) -> None:
    if base.is_dir():
        for entry in base.iterdir():
            if entry.is_dir() and entry.name != keep:
                shutil.rmtree(entry, ignore_errors=True)


def _build(path: Path, shape: tuple[int, int, int], fill) -> None:
    """Write a `[N, H, W, 3]` uint8 cache file with `fill(memmap)`, atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(*shape, 3))
        fill(out)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
