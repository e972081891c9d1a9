"""Remote policies: `policy="ws://HOST:PORT"` against a real in-process `vlaforge serve` server.

The server is the real one (`load_runtime` + `PolicyServer` on 127.0.0.1, port 0) serving a tiny
random-init regression checkpoint, which is deterministic: the remote run must give the same
per-episode outcomes and the same videos (hence the same actions) as evaluating the checkpoint in
this process, on the same seeds. One slot (one env, batch 1 on both sides) keeps the arithmetic
identical. Server errors and a server that goes away fail the affected episodes with the reason; the
run goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vlaforge.data.video import read_mp4
from vlaforge.errors import VlaforgeError
from vlaforge.eval.command import run
from vlaforge.eval.config import EvalConfig
from vlaforge.eval.runner import run_evaluation

TASKS = "reach-v3,drawer-close-v3"


def _stats(dim: int = 4) -> list[dict]:
    feature = {"mean": [0.1] * dim, "std": [0.5] * dim, "min": [-1.0] * dim, "max": [1.0] * dim,
               "q01": [-1.0] * dim, "q99": [1.0] * dim}  # fmt: skip
    return [{"action": feature, "observation.state": feature}]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vlaforge.models.config import ImageEncoderConfig, PolicyConfig, TrunkConfig
    from vlaforge.models.heads import HeadConfig
    from vlaforge.models.policy import VLAPolicy

    torch.manual_seed(0)
    cfg = PolicyConfig(
        image_size=32, history=2, chunk=8, execute_steps=4, normalization="bounds",
        image=ImageEncoderConfig(stem_channels=(8, 16), patch_size=8),
        trunk=TrunkConfig(width=32, depth=1, heads=2),
        head=HeadConfig(kind="regression", hidden_dim=32, num_blocks=1),
    )  # fmt: skip
    policy = VLAPolicy(cfg, stats=_stats(), metadata={"fps": 80, "tasks": ["Reach a goal position"]})
    return policy.save_pretrained(tmp_path_factory.mktemp("remote") / "ckpt")


@pytest.fixture
def server(checkpoint):
    from vlaforge.serve.runtime import load_runtime
    from vlaforge.serve.server import PolicyServer, ServerConfig

    srv = PolicyServer(load_runtime(checkpoint, max_batch=1), ServerConfig(port=0))
    srv.start_in_thread()
    yield srv
    srv.stop()


def _cfg(policy, out, **kw) -> EvalConfig:
    base = dict(suite=TASKS, episodes_per_task=2, workers=1, envs_per_worker=1, max_steps=12,
                videos_per_task=2, progress=False)  # fmt: skip
    return EvalConfig(policy=str(policy), out=str(out), **{**base, **kw})


def _videos(out, info) -> dict:
    return {(e["task"], e["episode"]): read_mp4(out / e["video"]) for e in info["episodes"]}


def test_remote_server_gives_the_checkpoints_episodes(tmp_path, checkpoint, server):
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert run(_cfg(checkpoint, local)) == 0
    assert run(_cfg(f"ws://127.0.0.1:{server.port}", remote)) == 0
    a, b = (json.loads((d / "eval_info.json").read_text()) for d in (local, remote))
    outcome = lambda info: [
        (e["task"], e["seed"], e["success"], e["length"], e["error"]) for e in info["episodes"]
    ]  # noqa: E731
    assert outcome(a) == outcome(b) and len(outcome(a)) == 4
    assert b["env"] == a["env"] and b["execution"]["chunk"] == 8 and b["execution"]["execute_steps"] == 4
    assert b["train_seeds"]["status"] == "unknown"  # the server does not report them
    va, vb = _videos(local, a), _videos(remote, b)
    assert va.keys() == vb.keys()
    for key in va:  # the same frames: the same actions were executed
        np.testing.assert_array_equal(va[key], vb[key])
    assert len({v.tobytes() for v in va.values()}) == 4  # and the episodes differ from each other


def test_a_server_error_fails_that_episode_with_the_reason_and_the_run_goes_on(tmp_path, server):
    # A key map that sends the state under a key the server does not know: every request is refused.
    cfg = _cfg(f"ws://127.0.0.1:{server.port}", tmp_path / "E", key_map="observation.state=proprio")
    assert run(cfg) == 0
    info = json.loads((tmp_path / "E" / "eval_info.json").read_text())
    assert len(info["episodes"]) == 4 and info["error"] is None and not info["interrupted"]
    for e in info["episodes"]:
        assert not e["success"] and e["length"] == 0
        assert "missing key 'observation.state'" in e["error"] and e["error"].startswith(
            "policy server ws://"
        )
    assert info["per_task"]["reach-v3"]["errors"] == 2
    page = (tmp_path / "E" / "report.html").read_text()
    assert "Episodes failed by policy errors (4)" in page and "missing key" in page


def test_a_server_that_goes_away_fails_the_remaining_episodes(tmp_path, checkpoint):
    from vlaforge.envs.registry import get_simulator
    from vlaforge.eval.policies import resolve_policy
    from vlaforge.serve.runtime import load_runtime
    from vlaforge.serve.server import PolicyServer, ServerConfig

    server = PolicyServer(load_runtime(checkpoint, max_batch=1), ServerConfig(port=0)).start_in_thread()
    stopped = []

    def stop_after_first_episode(loop):
        if loop.results and not stopped:
            stopped.append(server.stop())

    try:
        cfg = _cfg(f"ws://127.0.0.1:{server.port}", tmp_path / "E", timeout_s=10.0, videos_per_task=0)
        sim = get_simulator("metaworld")
        policy = resolve_policy(cfg, sim)
        info = run_evaluation(policy, sim.resolve_tasks(TASKS), cfg, on_step=stop_after_first_episode)
    finally:
        if not stopped:
            server.stop()
    first, *rest = info["episodes"]
    assert len(info["episodes"]) == 4 and info["error"] is None and stopped
    assert first["error"] is None and first["length"] == 12
    assert rest and all(e["error"] and e["error"].startswith("policy server ws://") for e in rest)


def test_an_unreachable_server_fails_before_any_environment(tmp_path):
    with pytest.raises(VlaforgeError, match="cannot use policy server ws://127.0.0.1:9"):
        run(_cfg("ws://127.0.0.1:9", tmp_path / "E", timeout_s=2.0))
    assert not (tmp_path / "E").exists()


def test_eval_does_not_import_serving():
    code = (
        "import sys, vlaforge.eval.command, vlaforge.eval.remote, vlaforge.eval.runner; "
        "bad = [m for m in sys.modules if m.startswith('vlaforge.serve')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_server_without_metadata_is_described_by_the_key_map():
    # openpi's own server sends no description of its keys: the key map and the config give them.
    from vlaforge.envs.registry import get_simulator
    from vlaforge.eval.remote import describe

    key_map = "observation.images.corner2=observation/image,observation.state=observation/state,task=prompt"
    cfg = EvalConfig(
        policy="ws://h:1", suite="reach", out="E", key_map=key_map, image_size=96, execute_steps=5
    )
    spec, layout = describe({}, cfg, get_simulator("metaworld"))
    assert layout.keys == {"observation.images.corner2": "observation/image",
                           "observation.state": "observation/state", "task": "prompt"}  # fmt: skip
    assert not layout.send_reset and layout.history == 1  # a stateless server: no reset message
    assert (spec.cameras, spec.image_size, spec.action_dim, spec.state_dim, spec.chunk) == (
        ("corner2",),
        96,
        4,
        4,
        0,
    )
    ours, ours_layout = describe({"server": "vlaforge", "cameras": ["corner2"], "history": 2, "chunk": 8,
                                  "execute_steps": 4, "action_dim": 4, "state_dim": 4,
                                  "instruction_keys": ["prompt", "task"],
                                  "observation": {"observation.images.corner2": {"shape": [48, 48, 3]}}},
                                 EvalConfig(policy="ws://h:1", suite="reach", out="E"),
                                 get_simulator("metaworld"))  # fmt: skip
    assert ours_layout.send_reset and ours_layout.history == 2 and ours.image_size == 48
    assert ours_layout.keys["task"] == "prompt" and (ours.chunk, ours.execute_steps) == (8, 4)
    with pytest.raises(VlaforgeError, match="must be ENV_KEY=SERVER_KEY"):
        describe(
            {},
            EvalConfig(policy="ws://h:1", suite="reach", out="E", key_map="task"),
            get_simulator("metaworld"),
        )
