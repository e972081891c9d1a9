"""`vlaforge <command>`: the command line, generated from each command's config dataclass.

Every command is a frozen config dataclass and a function `run(cfg) -> int`, both in the library;
this package only turns the command line into the config (`options.py`) and calls the function.
A command's module is imported only when it runs or its help is asked for, so `vlaforge --help`
stays fast (no torch). A `VlaforgeError` anywhere prints `vlaforge: error: <message>` and exits 2;
Ctrl-C exits 130.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from vlaforge.errors import VlaforgeError


@dataclass(frozen=True)
class Command:
    """One `vlaforge` command: its one-line help (kept here so --help imports nothing), its config
    class and run function as `module:name`, and the fields given as optional positionals."""

    help: str
    config: str
    run: str
    positional: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "collect": Command(
        "collect scripted demonstrations into a LeRobot v3 dataset",
        "vlaforge.data.collect:CollectConfig",
        "vlaforge.data.collect:run",
        positional=("simulator",),
    ),
    "presets": Command(
        "list the model presets with parameter counts",
        "vlaforge.models.preset_table:PresetsConfig",
        "vlaforge.models.preset_table:run",
    ),
    "tokenizer": Command(
        "fit the FAST action tokenizer on datasets (vlaforge tokenizer fit --data D --out T)",
        "vlaforge.train.tokenizer_command:TokenizerCommand",
        "vlaforge.train.tokenizer_command:run",
        positional=("action",),
    ),
    "train": Command(
        "train a policy on one or more datasets",
        "vlaforge.train.command:TrainCommand",
        "vlaforge.train.command:run_train",
    ),
    "pretrain": Command(
        "collect a recipe's mixture and pretrain one generalist on it (vlaforge pretrain --recipe base)",
        "vlaforge.train.pretrain:PretrainConfig",
        "vlaforge.train.pretrain:run",
    ),
    "finetune": Command(
        "fine-tune a trained policy on new data (full, frozen, LoRA)",
        "vlaforge.train.command:FinetuneCommand",
        "vlaforge.train.command:run_finetune",
    ),
    "eval": Command(
        "evaluate a policy (a checkpoint, the scripted expert, or a ws:// server) in simulation",
        "vlaforge.eval.config:EvalConfig",
        "vlaforge.eval.command:run",
    ),
    "serve": Command(
        "serve a policy over websockets (openpi protocol)",
        "vlaforge.serve.command:ServeCommand",
        "vlaforge.serve.command:run",
    ),
    "export": Command(
        "export a policy: dynamic INT8, ONNX",
        "vlaforge.deploy.command:ExportCommand",
        "vlaforge.deploy.command:run_export",
    ),
    "bench": Command(
        "benchmarks: policy latency",
        "vlaforge.deploy.command:BenchCommand",
        "vlaforge.deploy.command:run_bench",
    ),
    "quickstart": Command(
        "collect, train, evaluate and report in one go",
        "vlaforge.quickstart:QuickstartConfig",
        "vlaforge.quickstart:run",
    ),
}


def load(ref: str):
    """`"pkg.module:name"` -> the object."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser(argv: list[str]):
    """The parser; only the command named in `argv` gets its options (and imports its module)."""
    from vlaforge.cli.options import Parser, add_options

    parser = Parser(prog="vlaforge", description="Vision-language-action robot policies.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name != chosen:
            continue
        cls = load(command.config)
        p.set_defaults(_cls=cls, _opts=add_options(p, cls, command.positional), _run=command.run)
    return parser


def parse(argv: list[str]):
    """`argv` -> (the command's config, its run function); (None, None) when no command is given."""
    from vlaforge.cli.options import build_config

    args = build_parser(argv).parse_args(argv)
    if not getattr(args, "_cls", None):
        return None, None
    return build_config(args._cls, args._opts, args), load(args._run)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg, run = parse(argv)
        if run is None:
            build_parser([]).print_help()
            return 0 if not argv else 2
        return int(run(cfg) or 0)
    except VlaforgeError as err:
        print(f"vlaforge: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlaforge: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:  # --help, or a library that exits
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
