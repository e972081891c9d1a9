"""Evaluation sees exactly what collection recorded: same seed + same actions -> same state and frames.

We collect one expert episode with the real collector, replay its recorded actions through the eval
runner's own worker pool from the recorded seed, and compare every frame.

The comparison: the dataset's frames went through a lossy H.264 encode (yuv420p), so they cannot
equal a raw render bit for bit. We therefore (1) require the proprio state to match exactly (same seed,
same physics), (2) require every raw eval frame to lie within codec error of the recorded frame
(PSNR >= 35 dB, the writer's round-trip guarantee; measured ~36-39 dB), and (3) take the codec out
of the comparison: we encode the eval frames with the same `write_mp4` (H.264 is deterministic) and
decode them; identically rendered frames then decode to identical pixels, which we require exactly.
Any difference in camera, orientation, resolution or render flags breaks (3). Controls show the test
can fail: the recorded frame of the next step is never identical, and mostly below 35 dB
(measured 26-34 dB).
"""

from __future__ import annotations

import numpy as np

from vlaforge import keys as T
from vlaforge.data.collect import CollectConfig, collect
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset
from vlaforge.data.video import read_mp4, write_mp4
from vlaforge.eval.workers import EnvPool, EnvSpec

SIZE = 64
KEY = T.image_key("corner2")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _replay(seed: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames and states the eval workers produce: observation t is the one action t is taken from."""
    frames, states = [], []
    with EnvPool(1, EnvSpec(cameras=("corner2",), image_size=SIZE)) as pool:
        obs, crashed = pool.reset([(0, "reach-v3", seed, True)])
        assert not crashed
        obs = obs[0]
        for action in actions:
            frames.append(obs[KEY])
            states.append(obs[T.STATE])
            obs = pool.step({0: action})[0][0][0]
    return np.stack(frames), np.stack(states)  # [T, H, W, 3], [T, 4]


def test_eval_frames_equal_the_recorded_frames_for_the_same_seed_and_state(tmp_path):
    cfg = CollectConfig(
        tasks="reach-v3", out=str(tmp_path / "D"), episodes_per_task=1, image_size=SIZE, steps_after_success=2,
        workers=0, progress=False,
    )  # fmt: skip
    collect(cfg)
    ds = LeRobotV3Dataset(tmp_path / "D")
    ep = ds.episodes[0]
    rows = ds.column("episode_index").reshape(-1) == 0
    recorded = ds.episode_frames(0, KEY)  # [T, H, W, 3] decoded from the dataset's mp4
    frames, states = _replay(int(ep["seed"]), ds.column(T.ACTION)[rows])

    assert frames.shape == recorded.shape == (ep["length"], SIZE, SIZE, 3)
    np.testing.assert_array_equal(states, ds.column(T.STATE)[rows])  # same seed, same physics
    raw = [_psnr(f, r) for f, r in zip(frames, recorded, strict=True)]
    assert min(raw) >= 35.0, f"raw eval frame vs recorded frame: worst PSNR {min(raw):.1f} dB"
    write_mp4(tmp_path / "eval.mp4", frames, fps=ds.fps)
    roundtrip = read_mp4(tmp_path / "eval.mp4")
    np.testing.assert_array_equal(roundtrip, recorded)  # same pixels in, same encoder: identical out
    # Control: one step later the scene differs: not identical, and mostly outside the raw tolerance.
    assert all(np.any(roundtrip[t] != recorded[t + 1]) for t in range(len(recorded) - 1))
    assert np.median([_psnr(frames[t], recorded[t + 1]) for t in range(len(recorded) - 1)]) < 35.0
