"""`vlaforge export --policy CKPT [--int8] [--onnx] --out DIR`.

--int8   DIR becomes a servable INT8 policy (dynamic INT8 linear layers, `vlaforge.deploy.quantize`):
         `vlaforge serve --policy DIR` serves it.
--onnx   DIR/policy.onnx (+ text_embeddings.safetensors, onnx.json) from the fp32 weights
         (`vlaforge.deploy.export`; regression and token heads).
Both may be given; then DIR also gets policy.int8.onnx (onnxruntime dynamic quantization). An existing, non-empty DIR is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlaforge.errors import VlaforgeError

HELP = "export a policy: dynamic INT8, ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="checkpoint directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--int8", action="store_true", help="dynamic INT8 quantization of the linear layers")
    parser.add_argument(
        "--onnx", action="store_true", help="ONNX graph observation -> actions (regression/tokens heads)"
    )
    parser.add_argument(
        "--task",
        action="append",
        default=[],
        help="instruction whose text embedding is saved with the ONNX graph (repeatable; "
        "the checkpoint's known tasks are always saved)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size of the ONNX graph (fixed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    from vlaforge.deploy.export import save_onnx_export
    from vlaforge.deploy.quantize import is_int8_export, load_policy, save_int8

    if not (args.int8 or args.onnx):
        raise VlaforgeError("nothing to export: give --int8 and/or --onnx")
    source, out = Path(args.policy), Path(args.out)
    if out.resolve() == source.resolve():
        raise VlaforgeError(f"--out {out} is the checkpoint itself; choose another directory")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise VlaforgeError(f"{out} exists and is not empty (use --overwrite to replace it)")
    if is_int8_export(source):
        raise VlaforgeError(f"{source} is already an INT8 export; export from the fp32 checkpoint")
    policy = load_policy(source)
    written = []
    if args.int8:
        save_int8(policy, source, out)
        written.append(str(out))
    if args.onnx:
        onnx = save_onnx_export(policy, out, tasks=args.task, batch=args.batch, int8=args.int8)
        written += [str(onnx)] + ([str(onnx.with_name("policy.int8.onnx"))] if args.int8 else [])
    print(json.dumps({"policy": str(source), "written": written}, indent=2))
    return 0
