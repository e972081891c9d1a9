"""The rollout runner on real Meta-World: expert and random baselines, batching, crashes, Ctrl-C, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlaforge.data.video import read_mp4
from vlaforge.envs.registry import get_simulator
from vlaforge.errors import VlaforgeError
from vlaforge.eval.baselines import ExpertPolicy, RandomPolicy
from vlaforge.eval.command import run
from vlaforge.eval.config import EvalConfig
from vlaforge.eval.runner import run_evaluation
from vlaforge.eval.seeds import eval_seeds

SMALL = 64  # px, as in conftest.py: small renders keep the tests fast
METAWORLD = get_simulator("metaworld")


def _cfg(out, policy="expert", suite="reach-v3", **kw) -> EvalConfig:
    return EvalConfig(policy=policy, suite=suite, out=str(out), **kw)


def test_expert_scores_high_and_writes_json_videos_and_html(tmp_path, capsys):
    out = tmp_path / "E"
    cfg = _cfg(out, suite="reach-v3,drawer-open-v3", episodes_per_task=3, workers=2, image_size=SMALL,
               videos_per_task=1)  # fmt: skip
    assert run(cfg) == 0
    info = json.loads((out / "eval_info.json").read_text())
    for task in ("reach-v3", "drawer-open-v3"):
        m = info["per_task"][task]
        assert m["success_rate"] >= 0.9 and m["episodes"] == 3
        assert m["seeds"] == eval_seeds(0, 3) and m["difficulty"] == "easy" and m["instruction"]
        assert 0 < m["mean_length"] < 500
        (video,) = m["videos"]
        ep = next(e for e in info["episodes"] if e["video"] == video)  # the first success to finish
        frames = read_mp4(out / video)
        assert frames.shape == (ep["length"] + 1, SMALL, SMALL, 3)  # the reset frame + one per step
    assert info["overall"]["success_rate"] >= 0.9 and list(info["per_group"]) == ["easy"]
    assert info["timing"]["env_steps"] == sum(e["length"] for e in info["episodes"])
    assert info["timing"]["env_steps_per_s"] > 0 and not info["interrupted"]
    assert info["train_seeds"]["status"] == "not-applicable"
    page = (out / "report.html").read_text()
    assert f'<video src="{info["per_task"]["reach-v3"]["videos"][0]}"' in page
    assert "Open a drawer" in page and "<svg" in page
    assert "reach-v3" in capsys.readouterr().out  # the terminal table
    with pytest.raises(VlaforgeError, match="--overwrite"):  # an existing evaluation is kept
        run(cfg)


def test_random_policy_scores_about_zero_on_pick_place(tmp_path):
    # A uniform random walk never grasps, lifts and places the puck; 150 steps instead of 500 keep the
    # test short and can only lower its (already ~0) chance, and every episode must then run to the limit.
    cfg = _cfg(tmp_path, "random", "pick-place-v3", episodes_per_task=3, workers=2, envs_per_worker=2,
               max_steps=150, videos_per_task=0, image_size=SMALL)  # fmt: skip
    info = run_evaluation(RandomPolicy(cfg, METAWORLD), ["pick-place-v3"], cfg)
    m = info["per_task"]["pick-place-v3"]
    assert m["success_rate"] == 0.0 and m["episodes"] == 3 and m["mean_length"] == 150
    assert info["per_group"]["hard"]["success_rate"] == 0.0


@pytest.mark.parametrize(("mode", "calls"), [("receding", 3), ("ensemble", 6)])
def test_one_batched_call_per_step_with_padded_history(tmp_path, recording_policy, mode, calls):
    # 2 tasks x 2 episodes on 4 slots: all live at once, 6 steps each; history 3, chunk 4, k = 2.
    cfg = _cfg(tmp_path, "stub", "reach-v3,drawer-close-v3", episodes_per_task=2, workers=2,
               envs_per_worker=2, max_steps=6, videos_per_task=0, execution=mode)  # fmt: skip
    info = run_evaluation(recording_policy, ["reach-v3", "drawer-close-v3"], cfg)
    rec = recording_policy.calls
    assert len(rec) == calls == info["timing"]["policy_calls"]
    assert all(c["batch"] == 4 for c in rec)  # one call for every live environment
    assert rec[0]["image_shape"] == (4, 3, SMALL, SMALL, 3) and rec[0]["state_shape"] == (4, 3, 4)
    assert rec[0]["pad"] == [[True, True, False]] * 4  # before the episode start: copies, marked as padding
    step_of_call = [0, 2, 4] if mode == "receding" else [0, 1, 2, 3, 4, 5]
    for call, step in zip(rec, step_of_call, strict=True):
        assert call["pad"] == [[i < 2 - step for i in range(3)]] * 4
    assert sorted(set(rec[0]["task"])) == ["Push and close a drawer", "Reach a goal position"]
    assert info["timing"]["env_steps"] == 4 * 6


def test_a_killed_worker_is_restarted_and_its_episode_retried(tmp_path):
    killed = []

    def kill_worker_once(loop):
        if loop.env_steps >= 10 and not killed:
            killed.append(loop.pool.pids[0])
            os.kill(killed[0], signal.SIGKILL)

    cfg = _cfg(
        tmp_path, episodes_per_task=4, workers=2, envs_per_worker=1, videos_per_task=0, image_size=SMALL
    )
    info = run_evaluation(ExpertPolicy(cfg, METAWORLD), ["reach-v3"], cfg, on_step=kill_worker_once)
    assert killed
    assert info["robustness"] == {"retries": 1, "worker_restarts": 1, "workers": 2}
    m = info["per_task"]["reach-v3"]
    assert m["episodes"] == 4 and m["success_rate"] == 1.0 and m["retries"] == 1
    assert sum(e["retries"] for e in info["episodes"]) == 1
    saved = json.loads((tmp_path / "eval_info.json").read_text())
    assert saved["robustness"]["retries"] == 1


def test_a_worker_that_keeps_crashing_stops_with_an_error_and_keeps_the_results(tmp_path):
    def kill_after_first_episode(loop):
        if loop.results:
            os.kill(loop.pool.pids[0], signal.SIGKILL)

    cfg = _cfg(
        tmp_path, episodes_per_task=3, workers=1, envs_per_worker=1, videos_per_task=0, image_size=SMALL
    )
    with pytest.raises(VlaforgeError, match="crashed its worker 4 times"):
        run_evaluation(ExpertPolicy(cfg, METAWORLD), ["reach-v3"], cfg, on_step=kill_after_first_episode)
    info = json.loads((tmp_path / "eval_info.json").read_text())
    assert (
        info["per_task"]["reach-v3"]["episodes"] == 1 and info["per_task"]["reach-v3"]["success_rate"] == 1.0
    )
    assert "crashed its worker" in info["error"]["message"] and info["robustness"]["worker_restarts"] == 4


def test_action_dim_mismatch_fails_before_any_rollout(tmp_path):
    from vlaforge.models.config import PolicyConfig
    from vlaforge.models.policy import VLAPolicy

    policy = VLAPolicy(PolicyConfig(action_dim=7, image_size=SMALL))
    with pytest.raises(VlaforgeError, match="7-d actions but Meta-World takes 4-d"):
        run_evaluation(policy, ["reach-v3"], _cfg(tmp_path / "E", "p7", episodes_per_task=1))
    assert not (tmp_path / "E").exists()  # nothing written, no environment started


def test_ctrl_c_writes_the_results_so_far(tmp_path):
    out = tmp_path / "E"
    code = (
        "import sys; from vlaforge.eval.command import run; from vlaforge.eval.config import EvalConfig; "
        f"sys.exit(run(EvalConfig(policy='expert', suite='reach-v3', out={str(out)!r}, episodes_per_task=50, "
        f"workers=1, envs_per_worker=1, image_size={SMALL}, videos_per_task=50)))"
    )
    cmd = [sys.executable, "-c", code]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = out / "videos" / "reach-v3" / "episode_001.mp4"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.exists(), proc.communicate()[0].decode()[-2000:]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, output[-2000:]
    info = json.loads((out / "eval_info.json").read_text())
    assert info["interrupted"] is True and "INTERRUPTED" in output
    assert 2 <= info["per_task"]["reach-v3"]["episodes"] < 50
    assert Path(out / "report.html").exists()


def test_a_checkpoint_evaluates_and_its_training_seeds_are_respected(tmp_path):
    from vlaforge.models.config import PolicyConfig
    from vlaforge.models.policy import VLAPolicy

    meta = {"fps": 80, "train_seeds": [{"task": "Reach a goal position", "seed": eval_seeds(0, 1)[0]}]}
    VLAPolicy(PolicyConfig(image_size=SMALL, chunk=4, execute_steps=4), metadata=meta).save_pretrained(
        tmp_path / "ckpt"
    )
    cfg = _cfg(tmp_path / "E", str(tmp_path / "ckpt"), episodes_per_task=2, workers=1, max_steps=8,
               videos_per_task=1)  # fmt: skip
    with pytest.raises(VlaforgeError, match="--allow-train-seeds"):  # eval seed block 0 holds a training seed
        run(cfg)
    assert not (tmp_path / "E").exists()
    assert run(dataclasses.replace(cfg, allow_train_seeds=True)) == 0
    info = json.loads((tmp_path / "E" / "eval_info.json").read_text())
    assert info["train_seeds"]["status"] == "overlap-allowed"
    assert info["train_seeds"]["overlap"] == [["reach-v3", eval_seeds(0, 1)[0]]]
    assert info["per_task"]["reach-v3"]["episodes"] == 2 and info["env"]["image_size"] == SMALL
    assert info["timing"]["policy_calls"] == 2  # 8 steps, 4 actions per chunk, both episodes in one batch
    assert info["execution"] == {
        "mode": "receding",
        "execute_steps": 4,
        "chunk": 4,
        "history": 2,
        "ensemble_coeff": None,
        "inference_delay_ms": 0.0,
        "delay_steps": 0,
        "rtc_max_guidance": None,
    }


def test_the_report_keeps_the_first_failures_videos_too(tmp_path, capsys):
    # A 60-step limit makes the expert fail some reach episodes (seeds are fixed: the mix is too).
    cfg = _cfg(tmp_path, episodes_per_task=6, workers=1, image_size=32, videos_per_task=1, max_steps=60)
    assert run(cfg) == 0
    info = json.loads((tmp_path / "eval_info.json").read_text())
    outcomes = [e["success"] for e in info["episodes"]]
    assert any(outcomes) and not all(outcomes), "pick another step limit: all episodes end alike"
    kept = [e for e in info["episodes"] if e["video"]]
    assert sorted(e["success"] for e in kept) == [False, True]  # the first success and the first failure
    for e in kept:
        assert read_mp4(tmp_path / e["video"]).shape[0] == e["length"] + 1
    page = (tmp_path / "report.html").read_text()
    assert all(f'<video src="{e["video"]}"' in page for e in kept) and 'class="fail">failure' in page
    # stdout is not a terminal here: a few progress lines, not one per update
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("eval: ")]
    assert 1 <= len(lines) <= 10 and lines[-1].startswith("eval: 6/6 episodes")


def _stats(dim: int) -> dict:
    feature = {"mean": [0.0] * dim, "std": [1.0] * dim, "min": [-1.0] * dim, "max": [1.0] * dim,
               "q01": [-1.0] * dim, "q99": [1.0] * dim}  # fmt: skip
    return {"action": feature, "observation.state": feature}


def _dataset(name: str, dims: int, size: int) -> dict:
    return {"name": name, "root": f"/nonexistent/{name}", "action_dim": dims, "state_dim": dims,
            "cameras": {"corner2": {"frame_size": [size, size], "role": "primary"}}}  # fmt: skip


def test_a_mixture_checkpoint_evaluates_from_its_record_without_its_datasets(tmp_path):
    # Dataset 0 is a 7-d arm, dataset 1 Meta-World at 48 px frames; the image stem resizes to 32 px.
    # Neither dataset exists on this machine: everything comes from the checkpoint record.
    from vlaforge.models.config import PolicyConfig
    from vlaforge.models.policy import VLAPolicy

    meta = {"fps": 80, "datasets": [_dataset("arm7", 7, 48), _dataset("sawyer", 4, 48)], "train_seeds": []}
    cfg = PolicyConfig(image_size=32, action_dim=7, state_dim=7, chunk=4, execute_steps=4)
    VLAPolicy(cfg, stats=[_stats(7), _stats(7)], metadata=meta).save_pretrained(tmp_path / "ckpt")
    run_cfg = _cfg(tmp_path / "E", str(tmp_path / "ckpt"), episodes_per_task=1, workers=1, max_steps=4,
                   videos_per_task=0)  # fmt: skip
    with pytest.raises(VlaforgeError, match="7-d actions but Meta-World takes 4-d.*--embodiment"):
        run(run_cfg)
    with pytest.raises(VlaforgeError, match="unknown embodiment 'sawyr'.*sawyer"):
        run(dataclasses.replace(run_cfg, embodiment="sawyr"))
    assert run(dataclasses.replace(run_cfg, embodiment="sawyer")) == 0
    info = json.loads((tmp_path / "E" / "eval_info.json").read_text())
    assert info["env"]["image_size"] == 48  # the recorded frame size, not the stem's 32 px
    assert info["train_seeds"]["status"] == "disjoint" and info["per_task"]["reach-v3"]["episodes"] == 1
    # With the simulator recorded, the embodiment collected on it is picked without --embodiment.
    meta["datasets"][1]["simulator"] = "metaworld"
    VLAPolicy(cfg, stats=[_stats(7), _stats(7)], metadata=meta).save_pretrained(tmp_path / "ckpt2")
    auto = dataclasses.replace(run_cfg, policy=str(tmp_path / "ckpt2"), out=str(tmp_path / "E2"))
    assert run(auto) == 0
