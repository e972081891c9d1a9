"""`vlaforge <command>`: the command line.

Each command lives in its own module that defines `HELP: str`, `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so `vlaforge --help` stays
fast. A `VlaforgeError` anywhere prints one line and exits 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vlaforge.errors import VlaforgeError

# name -> (module, one-line help). Keep the help here so --help never imports torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("vlaforge.data.collect_cli", "collect scripted demonstrations into a LeRobot v3 dataset"),
    "presets": ("vlaforge.models.presets_cli", "list the model presets with parameter counts"),
    "train": ("vlaforge.train.cli", "train a policy on one or more datasets"),
    "finetune": (
        "vlaforge.train.finetune_cli",
        "fine-tune a trained policy on new data (full, frozen, LoRA)",
    ),
    "eval": ("vlaforge.eval.cli", "evaluate a policy (or the scripted expert) on Meta-World"),
    "serve": ("vlaforge.serve.cli", "serve a policy over websockets (openpi protocol)"),
    "export": ("vlaforge.deploy.cli", "export a policy: dynamic INT8, ONNX"),
    "bench": ("vlaforge.deploy.bench_cli", "benchmarks: policy latency"),
    "quickstart": ("vlaforge.quickstart", "collect, train, evaluate and report in one go"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlaforge", description="Vision-language-action robot policies.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the command being run imports its module; the others just show their help line.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args._run(args) or 0)
    except VlaforgeError as err:
        print(f"vlaforge: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlaforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
