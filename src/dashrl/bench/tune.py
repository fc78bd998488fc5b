"""`dashrl tune`: pick the inference batch size and the training micro-batch by measurement.

The paper's key observation is that inference and backprop want very different batch
sizes. This command measures, on this machine and this workload (model, task, max new
tokens, G), sampling throughput (sampled tokens/s) for each candidate inference batch
size and backprop throughput (trained tokens/s) for each candidate micro-batch size, each
micro-batch its own pass, and for the default of micro-batches joined into larger packed passes
(`train.pass_tokens`), then writes the best pair into a config file that `dashrl train --config` and
`dashrl bench --tuned` read. A candidate that runs out of memory ends its sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time


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


def _oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "out of memory" in str(e).lower()


def best(throughputs: dict[int, float]) -> int:
    """The size with the highest throughput (the smaller one on a tie).

    >>> best({8: 100.0, 16: 180.0, 32: 175.0})
    16
    """
    return max(sorted(throughputs), key=lambda k: throughputs[k])


def run(args: argparse.Namespace) -> int:
    from dashrl.config import ConfigError, load_config, to_toml

    try:
        cfg = load_config(args.config, list(args.overrides))
    except ConfigError as e:
        print(f"dashrl tune: {e}", file=sys.stderr)
        return 2
    from dashrl.models import load_model
    from dashrl.algo.filter import full_norm
    from dashrl.runtime.io import atomic_write_text
    from dashrl.train.loop import local_backend

    model, tok = load_model(cfg.model.name, attn=cfg.model.attn)
    src, tr = local_backend(cfg, model, tok, 1)
    G = cfg.algo.group_size
    sampling: dict[int, float] = {}
    for bs in sorted(args.batch_sizes):
        src.host.params = dataclasses.replace(src.host.params, batch_size=bs)
        n_prompts = max(1, -(-bs // G))  # at least one full inference batch
        try:
            ro = src.rollout(src.task.batch(0, n_prompts), seed=0)
        except (RuntimeError, MemoryError) as e:
            if _oom(e):
                break
            raise
        sampling[bs] = ro.metrics["gen/sampled_tokens"] / max(ro.metrics["time/sampling_s"], 1e-9)
        print(f"[tune] inference batch {bs}: {sampling[bs]:.0f} sampled tokens/s", file=sys.stderr)
    samples = src.rollout(src.task.batch(1, 4), seed=1).samples
    norm = full_norm(samples, cfg.sampler.max_new_tokens)
    backprop: dict[int, float] = {}  # micro-batch size -> trained tokens/s; 0: joined passes
    joined = tr.pass_tokens  # a packed pass's auto token budget (0: not packed)
    trials = [(m, 1 if joined else 0) for m in sorted(args.micro_batches or [G, 2 * G, 4 * G])]
    trials += [(G, joined)] if joined else []  # the default: micro-batches joined into larger passes
    for mbs, pass_tokens in trials:
        key = 0 if pass_tokens > 1 else mbs
        tr.cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=min(mbs, len(samples))))
        tr.pass_tokens = pass_tokens  # each micro-batch its own pass, or joined up to the budget
        try:
            t0 = time.perf_counter()
            out = tr.backprop(samples, norm)
            elapsed = time.perf_counter() - t0
        except (RuntimeError, MemoryError) as e:
            if _oom(e):
                break
            raise
        finally:
            tr.optimizer.zero_grad(set_to_none=True)
        backprop[key] = out["train/tokens"] / elapsed
        what = f"joined passes (up to {joined} tokens)" if key == 0 else f"micro-batch {mbs}"
        print(f"[tune] {what}: {backprop[key]:.0f} trained tokens/s", file=sys.stderr)
    if not sampling or not backprop:
        print("dashrl tune: no candidate ran (out of memory at the smallest size?)", file=sys.stderr)
        return 1
    b = best(backprop)
    # Joined passes best: the defaults (micro-batches of G joined from the model's shape); else the
    # measured micro-batch, each its own pass as measured.
    train = dataclasses.replace(
        cfg.train,
        micro_batch_size=min(b or G, cfg.algo.samples_per_step),
        pass_tokens=0 if b == 0 else (1 if joined else cfg.train.pass_tokens),
    )
    tuned = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, batch_size=best(sampling)), train=train)
    chosen = "joined passes" if b == 0 else f"micro-batch {b}"
    atomic_write_text(
        args.out, f"# Written by dashrl tune: inference batch {best(sampling)}, {chosen}.\n" + to_toml(tuned)
    )
    print(f"[tune] best inference batch {best(sampling)}, best {chosen} -> {args.out}")
    return 0
