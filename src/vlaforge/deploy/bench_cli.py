"""`vlaforge bench latency`: per-call latency of a preset's policy on the CPU (see `deploy/bench.py`).

The policy is freshly initialised (latency does not depend on the weights) unless `--policy DIR`
names a checkpoint. `--head` swaps the preset's head kind (tokens also switches to bounds
normalization); `-o key=value` overrides any config field.
"""

from __future__ import annotations

import argparse
import json

HELP = "benchmarks: policy latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["latency"], help="which benchmark")
    parser.add_argument("--preset", default=None, help="model preset (default: the default preset)")
    parser.add_argument("--policy", default=None, help="a checkpoint directory instead of a preset")
    parser.add_argument(
        "--head",
        default=None,
        help="override the head kind (regression, tokens, diffusion, flow, flow-expert)",
    )
    parser.add_argument("-o", "--override", action="append", default=[], help="config override key=value")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--iters", type=int, default=50, help="timed calls")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument(
        "--int8", action="store_true", help="time the dynamic INT8 policy (vlaforge.deploy.quantize)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def build_policy(args: argparse.Namespace):
    """The policy to time: a checkpoint, or a preset with --head / overrides applied."""
    import torch

    from vlaforge.config import apply_overrides
    from vlaforge.errors import VlaforgeError
    from vlaforge.models.heads import HEAD_KINDS
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import DEFAULT_PRESET, get_preset, with_head

    if args.policy:
        if args.preset or args.head or args.override:
            raise VlaforgeError("--policy cannot be combined with --preset, --head or -o")
        from vlaforge.deploy.quantize import load_policy

        return load_policy(args.policy), args.policy
    name = args.preset or DEFAULT_PRESET
    cfg = get_preset(name)
    if args.head:
        if args.head not in HEAD_KINDS:
            from vlaforge.errors import unknown

            raise unknown("head kind", args.head, HEAD_KINDS)
        cfg = with_head(cfg, args.head)
    cfg = apply_overrides(cfg, args.override)
    torch.manual_seed(0)
    return VLAPolicy(cfg), name


def run(args: argparse.Namespace) -> int:
    from vlaforge.deploy.bench import measure_latency

    policy, name = build_policy(args)
    params = policy.num_parameters()  # counted on the fp32 model (quantized linears hold no Parameters)
    if args.int8:
        from vlaforge.deploy.quantize import quantize_dynamic_int8

        policy = quantize_dynamic_int8(policy).eval()
    result = measure_latency(policy, iters=args.iters, warmup=args.warmup, threads=args.threads)
    result = {"preset": name, "head": policy.config.head.kind, "int8": args.int8,
              "image_size": policy.config.image_size, "camera_px": 128, "history": policy.config.history, **result,
              "params_trainable": params["trainable"], "params_frozen_text": params["frozen_text"]}  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0
