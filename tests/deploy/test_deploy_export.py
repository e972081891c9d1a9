"""`vlaforge export`: dynamic INT8 (served, close to fp32) and ONNX parity under onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from safetensors.torch import load_file

from vlaforge.cli import main
from vlaforge.deploy.export import OnnxPolicy, example_inputs
from vlaforge.deploy.quantize import load_policy
from vlaforge.serve.runtime import load_runtime
from vlaforge.serve.server import PolicyServer, ServerConfig


def _batch(seed: int, tasks: list[str], pad_first: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = len(tasks)
    return {
        "observation.images.corner2": torch.randint(
            0, 256, (b, 2, 32, 32, 3), generator=g, dtype=torch.uint8
        ),
        "observation.state": torch.rand(b, 2, 4, generator=g) * 1.5 - 0.5,
        "observation_is_pad": torch.tensor([[pad_first, False]] * b),
        "task": tasks,
    }


def test_int8_export_is_close_to_fp32_and_served(regression_ckpt, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["export", "--policy", str(regression_ckpt), "--int8", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == [str(out)]
    assert (out / "model_int8.safetensors").stat().st_size < (
        regression_ckpt / "model.safetensors"
    ).stat().st_size
    fp32, int8 = load_policy(regression_ckpt), load_policy(out)
    assert "DynamicQuantizedLinear" in repr(int8.trunk)
    batch = _batch(0, ["reach the goal", "push the block"] * 4, pad_first=True)
    ref, got = fp32.sample_actions(batch), int8.sample_actions(batch)
    assert got.shape == ref.shape == (8, 8, 4)
    assert 0 < (got - ref).abs().max() < 0.05  # quantized, and close (actions span [-1, 1])
    torch.testing.assert_close(
        load_policy(regression_ckpt, int8=True).sample_actions(batch), got
    )  # saved == requantized
    with PolicyServer(load_runtime(out), ServerConfig(port=0)) as srv:  # `vlaforge serve --policy DIR`
        client = WebsocketClientPolicy("127.0.0.1", srv.port)
        reply = client.infer(
            {
                "observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
                "observation.state": np.zeros(4, np.float32),
                "prompt": "reach the goal",
            }
        )
        assert reply["actions"].shape == tuple(client.get_server_metadata()["action"]["shape"])
        client._ws.close()


@pytest.mark.parametrize("head", ["regression", "tokens", "keypoints", "film"])
def test_onnx_parity(head, regression_ckpt, tokens_ckpt, keypoints_ckpt, film_ckpt, tmp_path):
    ckpt = {
        "regression": regression_ckpt,
        "tokens": tokens_ckpt,
        "keypoints": keypoints_ckpt,
        "film": film_ckpt,
    }[head]
    out = tmp_path / "onnx"
    assert (
        main(["export", "--policy", str(ckpt), "--onnx", "--out", str(out), "--task", "open the drawer"]) == 0
    )
    info = json.loads((out / "onnx.json").read_text())
    assert info["output"]["actions"] == [1, 8, 4] and "open the drawer" in info["tasks"]
    embeddings = load_file(str(out / "text_embeddings.safetensors"))  # cached, no text encoder needed
    onnx, policy = OnnxPolicy(out / "policy.onnx"), load_policy(ckpt)
    for seed, task, pad in [
        (0, "reach the goal", True),
        (1, "open the drawer", False),
        (2, "push the block", True),
    ]:
        batch = _batch(seed, [task], pad)
        ref = policy.sample_actions(batch).numpy()  # [1, H, A]
        got = onnx.sample_actions({**batch, "text_embedding": embeddings[task][None]})
        if head in ("regression", "keypoints", "film"):  # keypoints, film: regression heads on other stems
            np.testing.assert_allclose(got, ref, atol=1e-4)
        else:  # argmax of near-tied logits may pick a neighbouring bin: 1 bin = 2/32 here
            assert np.mean(np.abs(got - ref) < 1e-5) >= 0.95 and np.abs(got - ref).max() <= 2 / 32 + 1e-5


def test_int8_onnx_is_close(regression_ckpt, tmp_path):
    out = tmp_path / "both"
    assert main(["export", "--policy", str(regression_ckpt), "--int8", "--onnx", "--out", str(out)]) == 0
    assert (out / "quantization.json").exists() and (out / "policy.onnx").exists()
    embeddings = load_file(str(out / "text_embeddings.safetensors"))
    batch = _batch(3, ["reach the goal"], True)
    ref = load_policy(regression_ckpt).sample_actions(batch).numpy()
    got = OnnxPolicy(out / "policy.int8.onnx").sample_actions(
        {**batch, "text_embedding": embeddings["reach the goal"][None]}
    )
    assert 0 < np.abs(got - ref).max() < 0.05


def test_export_refuses_bad_requests(regression_ckpt, tmp_path, capsys):
    assert main(["export", "--policy", str(regression_ckpt), "--out", str(tmp_path / "x")]) == 2
    assert main(["export", "--policy", str(regression_ckpt), "--int8", "--out", str(regression_ckpt)]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert main(["export", "--policy", str(regression_ckpt), "--int8", "--out", str(tmp_path / "busy")]) == 2
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert "nothing to export" in err and "checkpoint itself" in err and "not empty" in err


def test_diffusion_head_is_not_onnx_exportable(tmp_path):
    from serve_helpers import make_checkpoint

    from vlaforge.deploy.export import export_onnx
    from vlaforge.errors import VlaforgeError

    policy = load_policy(make_checkpoint(tmp_path / "diffusion", "diffusion"))
    with pytest.raises(VlaforgeError, match="regression and tokens heads"):
        export_onnx(policy, tmp_path / "p.onnx")
    assert example_inputs(policy)["observation_is_pad"].tolist() == [[True, False]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--onnx", "--batch", "0", "--out", "{tmp}/x"], "--batch must be at least 1, got 0"),
        (["--int8", "--out", "{tmp}/file"], "--out {tmp}/file: is a file, not a directory"),
        (
            ["--int8", "--out", "/proc/vlaforge-export"],
            "--out /proc/vlaforge-export: cannot write the export",
        ),
    ],
)
def test_export_output_faults_are_one_line_errors(regression_ckpt, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("x")
    argv = ["export", "--policy", str(regression_ckpt), *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and err.startswith("vlaforge: error: ") and message.format(tmp=tmp_path) in err
    )
    assert (tmp_path / "file").read_text() == "x" and not (tmp_path / "x").exists()


def test_an_autoregressive_head_is_refused_before_anything_is_written(tmp_path, capsys):
    from serve_helpers import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "ar", "ar-bins")
    out = tmp_path / "out"
    assert main(["export", "--policy", str(ckpt), "--int8", "--onnx", "--out", str(out)]) == 2
    assert "is not ONNX-exportable" in capsys.readouterr().err
    assert not out.exists()
