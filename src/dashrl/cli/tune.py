"""`dashrl tune`: pick the inference batch size and the training micro-batch by measurement.

    dashrl tune [--config FILE.toml] [--batch-sizes 8,16,...] [--micro-batches ...] [--out tuned.toml]

Writes the best pair into a config file that `dashrl train --config` and `dashrl bench --tuned`
read; the sweeps and how the winner is chosen are `dashrl.bench.tune`'s.
"""

from __future__ import annotations

import argparse
import sys


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="TOML run file describing the workload")
    p.add_argument("--batch-sizes", type=_ints, default=[8, 16, 32, 64, 128], help="inference batch sizes to try")
    p.add_argument(
        "--micro-batches", type=_ints, default=None, help="micro-batch sizes (samples) to try; default G, 2G, 4G"
    )
    p.add_argument("--out", default="tuned.toml", help="config file to write")
    p.epilog = "Extra --section.field VALUE overrides describe the workload (model, task, sampler, algo)."


def run(args: argparse.Namespace) -> int:
    from dashrl.config import ConfigError, load_config, to_toml

    try:
        cfg = load_config(args.config, list(args.overrides))
    except ConfigError as e:
        print(f"dashrl tune: {e}", file=sys.stderr)
        return 2
    from dashrl.bench.tune import backprop_sweep, largest_call, sampling_sweep, tuned_config
    from dashrl.models import load_model
    from dashrl.runtime.io import atomic_write_text
    from dashrl.train.loop import local_backend

    model, tok = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    src, tr = local_backend(cfg, model, tok, 1)
    joined = tr.pass_tokens  # a packed pass's auto token budget (0: not packed), before the sweep sets its own
    most = largest_call(cfg)
    sizes = [b for b in args.batch_sizes if b <= most] or [most]
    if len(sizes) < len(args.batch_sizes):
        left = ", ".join(str(b) for b in args.batch_sizes if b not in sizes)
        print(f"[tune] inference batch {left} left out: a step decodes at most {most} rows at once", file=sys.stderr)
    sampling = sampling_sweep(src, sizes)
    backprop = backprop_sweep(src, tr, cfg, args.micro_batches, joined)
    if not sampling or not backprop:
        print("dashrl tune: no candidate ran (out of memory at the smallest size?)", file=sys.stderr)
        return 1
    tuned, chosen = tuned_config(cfg, sampling, backprop, joined)
    batch = tuned.sampler.batch_size
    atomic_write_text(args.out, f"# Written by dashrl tune: inference batch {batch}, {chosen}.\n" + to_toml(tuned))
    print(f"[tune] best inference batch {batch}, best {chosen} -> {args.out}")
    return 0
