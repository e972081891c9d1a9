"""Parity with LeRobot's own SmolVLA: same weights, observation and noise -> the same actions.

LeRobot runs in a side environment (`benchmarks/smolvla_parity.sh` creates /tmp/vlm-lerobot-venv;
another one can be named with VLAFORGE_LEROBOT_PYTHON). Its half
(`benchmarks/smolvla_parity_lerobot.py`) builds `SmolVLAPolicy` at a tiny random configuration
offline and saves it; the offline shims it needs are listed in that script's docstring (a local
tiny SmolVLM folder in place of the Hub's SmolVLM2, the folder's tokenizer in place of
`AutoProcessor`, stand-ins for torchvision and for LeRobot's groot module). Skipped, with that
reason, when the side environment is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones.import_lerobot import import_lerobot_smolvla
from vlaforge.models.heads.common import euler_integrate

ROOT = Path(__file__).resolve().parents[2]
LEROBOT_PYTHON = Path(os.environ.get("VLAFORGE_LEROBOT_PYTHON", "/tmp/vlm-lerobot-venv/bin/python"))
NOISE_SEED = 1234  # benchmarks/smolvla_parity_lerobot.py draws LeRobot's noise from this seed


@pytest.fixture(scope="module")
def lerobot_run(tmp_path_factory) -> Path:
    if not LEROBOT_PYTHON.exists():
        pytest.skip(f"no LeRobot side environment at {LEROBOT_PYTHON} (bash benchmarks/smolvla_parity.sh)")
    out = tmp_path_factory.mktemp("smolvla-parity")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    script = ROOT / "benchmarks" / "smolvla_parity_lerobot.py"
    done = subprocess.run(
        [str(LEROBOT_PYTHON), str(script), "--out", str(out)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _imported(run: Path):
    return import_lerobot_smolvla(run / "lerobot", vlm_id=str(run / "vlm"))


def test_model_actions_match_lerobot(lerobot_run):
    """Same pixels, token ids, state and noise through the prefix and 10 Euler steps of the expert."""
    policy, io = _imported(lerobot_run), load_file(str(lerobot_run / "io.safetensors"))
    bb, head = policy.backbone, policy.head
    with torch.no_grad():
        pixels = bb.images(io["frames"])  # our preprocessing of the same uint8 frames
        assert (pixels - io["pixels"]).abs().max() <= 1e-5
        out = bb.forward_prefix([pixels], io["ids"], io["mask"].bool(), io["state"])
        ctx = head.context(out, 1)
        actions = euler_integrate(lambda x, t: head.velocity(x, t, ctx), io["noise"], head.flow_steps)
    assert (actions - io["actions"]).abs().max() <= 1e-4


def test_policy_sample_actions_match_lerobot(lerobot_run):
    """The whole vlaforge path: uint8 frames, instruction strings (tokenized here), 4-d state padded
    to LeRobot's 32, noise from the seeded generator; identity normalization on both sides."""
    policy, io = _imported(lerobot_run), load_file(str(lerobot_run / "io.safetensors"))
    tasks = [t.rstrip("\n") for t in json.loads((lerobot_run / "tasks.json").read_text())]
    obs = {
        "observation.images.corner2": io["frames"][:, None],  # [B, 1, H, W, C] uint8
        "observation.state": io["state"][:, None, :4],  # the robot's 4 dims; LeRobot padded to 32
        "task": tasks,
    }
    actions = policy.sample_actions(obs, torch.Generator().manual_seed(NOISE_SEED))
    assert actions.shape == io["actions"].shape
    assert (actions - io["actions"]).abs().max() <= 1e-4


def test_import_refuses_what_it_does_not_implement(lerobot_run, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    data = json.loads((lerobot_run / "lerobot" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "add_image_special_tokens": True}))
    with pytest.raises(VlaforgeError, match="add_image_special_tokens"):
        import_lerobot_smolvla(folder, vlm_id=str(lerobot_run / "vlm"))
