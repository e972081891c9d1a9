"""The command line generated from the configs: options, help text, --set, errors, round trips."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from vlaforge.cli import COMMANDS, main, parse
from vlaforge.cli.options import Parser, add_options, build_config
from vlaforge.config import apply_overrides, field_docs, option, to_argv
from vlaforge.errors import VlaforgeError
from vlaforge.train.config import TrainConfig


@dataclass(frozen=True)
class Section:
    depth: int = 2
    """Blocks in the trunk."""
    width: float = 0.5  # a trailing comment documents this one


@dataclass(frozen=True)
class Toy:
    """A config shaped like a command's."""

    name: str
    """The required name."""
    mode: Literal["fast", "slow"] = "fast"
    """How to run."""
    # The comment above documents this field.
    items: tuple[int, ...] = (1, 2)
    paths: tuple[str, ...] = field(default=(), metadata=option(repeat=True))
    """One path per repetition."""
    verbose: bool = False
    """Say more."""
    limit: int | None = None
    """An optional limit; none: no limit."""
    section: Section = field(default_factory=Section, metadata=option(expose=("depth",)))
    """A nested section; only depth is an option."""
    what: str = field(default="all", metadata=option(positional=True))
    """An optional positional."""


def toy(argv: list[str]) -> Toy:
    parser = Parser(prog="toy")
    opts = add_options(parser, Toy)
    return build_config(Toy, opts, parser.parse_args(argv))


def test_field_docs_read_docstrings_and_comments():
    docs = field_docs(Toy)
    assert docs["name"] == "The required name." and docs["mode"] == "How to run."
    assert docs["items"] == "The comment above documents this field."
    assert field_docs(Section)["width"] == "a trailing comment documents this one"
    assert field_docs(TrainConfig)["steps"].startswith("Optimizer steps in total")


def test_options_follow_the_field_types():
    cfg = toy(["--name", "n", "--mode", "slow", "--items", "3,4", "--paths", "a,b", "--paths", "c",
               "--verbose", "--limit", "7", "--depth", "5", "second"])  # fmt: skip
    assert cfg == Toy(
        name="n", mode="slow", items=(3, 4), paths=("a,b", "c"), verbose=True, limit=7,
        section=Section(depth=5), what="second",
    )  # fmt: skip
    assert toy(["--name", "n"]) == Toy(name="n")  # the field defaults
    assert toy(["--name", "n", "--limit", "none", "--no-verbose"]).limit is None


def test_set_reaches_nested_sections_and_wins_over_options():
    cfg = toy(["--name", "n", "--depth", "5", "--set", "section.depth=6", "--set", "section.width=2"])
    assert cfg.section == Section(depth=6, width=2.0)
    assert toy(["--name", "n", "--set", "items=[5, 6]"]).items == (5, 6)


def test_help_text_is_the_field_docstring_with_its_default():
    parser = Parser(prog="toy")
    add_options(parser, Toy)
    text = " ".join(parser.format_help().split())
    assert "--mode {fast,slow} How to run. (default: fast)" in text
    assert "The comment above documents this field. (default: 1,2)" in text
    assert "--verbose, --no-verbose Say more." in text
    assert "--width" not in text  # not exposed: reached with --set section.width=...


def test_command_help_comes_from_the_library_fields(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert field_docs(TrainConfig)["lr"] in text and "(default: 0.0003)" in text
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    from vlaforge.serve.server import ServerConfig

    assert field_docs(ServerConfig)["max_message_bytes"] in text
    assert f"(default: {ServerConfig().max_message_bytes})" in text  # ServerConfig's, not re-declared


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--name", "n", "--mode", "fsat"],
            "--mode: 'fsat' is not one of ['fast', 'slow'] (did you mean 'fast'?)",
        ),
        (["--name", "n", "--items", "1,x"], "--items: expected an integer, got 'x'"),
        (["--mode", "fast"], "the following arguments are required: --name"),
        (["--name", "n", "--set", "section.dept=1"], "did you mean 'depth'"),
    ],
)
def test_bad_values_are_one_line_errors(argv, message):
    with pytest.raises(VlaforgeError, match="^" + _re(message)):
        toy(argv)


def _re(text: str) -> str:
    import re

    return ".*" + re.escape(text)


# Every command: the smallest valid command line, a --set, and where its value must land.
SET_CASES = {
    "collect": (["collect", "metaworld", "--tasks", "reach", "--out", "d"], "seed=3", ("seed",), 3),
    "presets": (["presets"], "json=true", ("json",), True),
    "train": (["train", "--data", "d", "--out", "r"], "train.lr=0.5", ("train", "lr"), 0.5),
    "finetune": (["finetune", "--from", "c", "--data", "d"], "train.augment.shift=0", ("train", "augment", "shift"), 0),
    "pretrain": (["pretrain", "--recipe", "base"], "train.lr=0.5", ("train",), ("lr=0.5",)),
    "eval": (["eval", "--policy", "expert", "--suite", "reach-v3", "--out", "e"], "episodes_per_task=3", ("episodes_per_task",), 3),
    "serve": (["serve", "--policy", "p"], "server.idle_timeout_s=5", ("server", "idle_timeout_s"), 5.0),
    "export": (["export", "--policy", "p", "--out", "x"], "batch=2", ("batch",), 2),
    "bench": (["bench", "latency"], "iters=3", ("iters",), 3),
    "quickstart": (["quickstart"], "eval_episodes=4", ("eval_episodes",), 4),
    "tokenizer": (["tokenizer", "fit", "--data", "d", "--out", "t"], "vocab=256", ("vocab",), 256),
}  # fmt: skip


def test_every_command_has_a_case():
    assert set(SET_CASES) == set(COMMANDS)


@pytest.mark.parametrize("name", list(SET_CASES))
def test_set_is_accepted_by_every_command(name):
    argv, item, path, expected = SET_CASES[name]
    cfg, run = parse([*argv, "--set", item])
    assert callable(run) and dataclasses.is_dataclass(cfg), f"{name} has no config dataclass yet"
    value = cfg
    for part in path:
        value = getattr(value, part)
    assert value == expected
    assert to_argv(cfg, COMMANDS[name].positional)  # and it prints back as a command line
    again, _ = parse([name, *to_argv(cfg, COMMANDS[name].positional)])
    assert again == cfg


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--steps", "ten"], "--steps: expected an integer, got 'ten'"),
        (["train", "--device", "gpu"], "--device: 'gpu' is not one of"),
        (["serve", "--policy", "p", "--port", "http"], "--port: expected an integer, got 'http'"),
        (["bench", "latncy"], "'latncy' is not one of ['latency'] (did you mean 'latency'?)"),
        (["export", "--policy", "p"], "the following arguments are required: --out"),
        (["quickstart", "--budget-minutes", "soon"], "--budget-minutes: expected a number, got 'soon'"),
        (["train", "--set", "lr=1"], "unknown config key 'lr' (did you mean 'train.lr'?)"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["trian"], "invalid choice: 'trian'"),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vlaforge: error: ") and message in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--policy", "random", "--suite", "reach-v3", "--out", "{file}"], "--out {file}: is a file, not a directory"),
        (["eval", "--policy", "random", "--suite", "reach-v3", "--out", "/proc/vlaforge-eval"], "--out /proc/vlaforge-eval: cannot write there"),
        (["collect", "metaworld", "--tasks", "reach", "--out", "{file}"], "--out {file}: is a file, not a directory"),
        (["collect", "metaworld", "--tasks", "reach", "--out", "/proc/vlaforge-data"], "--out /proc/vlaforge-data: cannot write there"),
        (["export", "--policy", "p", "--int8", "--out", "{file}"], "--out {file}: is a file, not a directory"),
        (["export", "--policy", "p", "--onnx", "--batch", "0", "--out", "x"], "--batch must be at least 1, got 0"),
        (["train", "--data", "{file}", "--out", "{file}"], "--out {file}: is a file, not a directory"),
    ],
)  # fmt: skip
def test_outputs_that_cannot_be_written_exit_2_with_one_line(argv, message, tmp_path, capsys):
    """Refused before any work: no simulator, policy or dataset is opened, nothing is created."""
    file = tmp_path / "file"
    file.write_text("mine")
    assert main([a.format(file=file) for a in argv]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and err.startswith("vlaforge: error: ") and message.format(file=file) in err
    ), err
    assert file.read_text() == "mine" and sorted(tmp_path.iterdir()) == [file]


def test_model_overrides_are_kept_for_the_preset():
    cfg, _ = parse(["train", "--data", "d", "--out", "r", "--set", "model.head.kind=flow",
                    "--set", "model.cameras=[a, b]", "--steps", "7"])  # fmt: skip
    assert cfg.model == ("head.kind=flow", "cameras=[a, b]") and cfg.steps == 7
    from vlaforge.train.command import TrainCommand, training_spec

    spec, out, resuming = training_spec(cfg, "train", TrainCommand(), {"preset": None})
    assert spec["overrides"] == ["model.head.kind=flow", "model.cameras=[a, b]", {"train.steps": 7}]
    assert apply_overrides(TrainConfig(), [{"steps": 7}]).steps == 7  # typed, not re-parsed


def test_finetune_starts_from_its_own_loop_defaults():
    cfg, _ = parse(["finetune", "--from", "c", "--data", "d", "--out", "r"])
    from vlaforge.train.config import FINETUNE_TRAIN

    assert cfg.train == FINETUNE_TRAIN and cfg.source == "c"


def test_resume_takes_only_steps_and_device(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"command": "train", "data": [], "overrides": []}')
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "only --steps and --device may change" in capsys.readouterr().err
    from vlaforge.train.command import TrainCommand, training_spec

    cfg, _ = parse(["train", "--resume", str(run), "--steps", "40", "--device", "cpu"])
    spec, out, resuming = training_spec(cfg, "train", TrainCommand(), {})
    assert resuming and out == run and spec["overrides"] == [{"train.steps": 40}]
    cfg, _ = parse(["train", "--resume", str(run), "--steps", "10000"])  # the default value, but given
    assert training_spec(cfg, "train", TrainCommand(), {})[0]["overrides"] == [{"train.steps": 10000}]
    cfg, _ = parse(["train", "--resume", str(run)])
    assert training_spec(cfg, "train", TrainCommand(), {})[0]["overrides"] == []


def test_top_level_help_imports_no_torch():
    code = (
        "import sys; from vlaforge.cli import main; rc = main(['--help']);"
        "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:3]"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    assert proc.returncode == 0, proc.stderr
    assert "quickstart" in proc.stdout


def test_python_dash_m_entry_points():
    for module in ("vlaforge", "vlaforge.cli"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "presets", "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0 and "--json" in proc.stdout, proc.stderr


def test_quickstart_prints_command_lines_that_rebuild_its_stages(tmp_path):
    from vlaforge.quickstart import Quickstart, QuickstartConfig

    cfg, _ = parse(["quickstart", "--out", str(tmp_path), "--batch-size", "8", "--image-size", "32",
                    "--set", "model.head.kind=flow", "--set", "train.lr=0.001"])  # fmt: skip
    assert cfg == QuickstartConfig(
        out=str(tmp_path), batch_size=8, image_size=32, model=("head.kind=flow",), train=("lr=0.001",)
    )
    command = Quickstart(cfg).train_command(120, tmp_path / "run", minutes=2.5)
    assert command.train.lr == 0.001 and command.train.max_minutes == 2.5 and command.train.batch_size == 8
    assert command.model == ("image_size=32", "head.kind=flow")
    again, run = parse(["train", *to_argv(command)])
    assert again == command and run.__name__ == "run_train"


def test_serve_options_are_server_config_fields(monkeypatch):
    from vlaforge.serve.command import server_config
    from vlaforge.serve.server import ServerConfig

    cfg, _ = parse(["serve", "--policy", "p", "--idle-timeout", "0", "--port", "0", "--log-level", "debug"])
    assert cfg.server == ServerConfig(port=0, idle_timeout_s=0.0) and cfg.log_level == "DEBUG"
    monkeypatch.setenv("VLAFORGE_API_KEY", "k")
    net = server_config(cfg)
    assert net.idle_timeout_s is None and net.api_key == "k"  # 0 = never; the key from the environment
    with pytest.raises(VlaforgeError, match="too small"):  # ServerConfig checks itself when built
        server_config(parse(["serve", "--policy", "p", "--max-message-bytes", "10"])[0])
