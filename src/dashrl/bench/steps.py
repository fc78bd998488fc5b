"""`dashrl bench`: the paper's comparison side by side, in one run, as ratios.

Variants share the model's initial weights, task, seed, prompts, M, G, max new tokens and
learning rate, and run *interleaved*, one optimizer step of each in turn (the order rotates
every step), so machine noise hits all of them alike:

- `grpo`: the standard implementation (generation per training micro-batch, PPO ratio,
  reference-model KL, beta 0.04, no filtering);
- `dash_nogf`: DASH without gradient filtering;
- `dash`: DASH with gradient filtering;
- `trl`: TRL's GRPOTrainer on the same workload (`dashrl.peers.trl_grpo`, optional extra
  `dashrl[bench]`), with the generation batch size that a measured probe finds fastest;
- `dash_vllm`: DASH with the `vllm` sampler backend (when vLLM is installed).

`dashrl bench --sampling` compares the sampler backends alone on the same prompts: the `hf`
sampler's static decoder (with and without shared-prefix attention), its plain transformers
loop, and `vllm` when installed. Reported: sampled tokens/s at each `--batches` size,
interleaved, their MFU, start-up and weight-sync seconds, how far each backend's logprobs are
from the trainer's recomputation, and a roofline of one decode step (FLOPs and bytes against
the measured matmul peak and copy bandwidth).

One untimed warm-up step (of `dash` where it runs, on a throwaway copy of the weights) comes
first, so that no variant's timed steps pay the process's start-up costs; the table's header says
so. Ctrl-C stops the bench cleanly: the steps that every variant finished are written and printed
as usual, with the header saying how many of the planned steps they are (exit status 130).

Reported per variant: seconds per optimizer step and per sample, the time split, sampled
and trained tokens/s, the reward over the run, model-FLOP utilisation of sampling and
backprop against this machine's measured matmul peak, and ratios against `grpo` and `trl`.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dashrl.runtime.hardware import log, matmul_peak, memory_bandwidth
from dashrl.runtime.io import save_figure

VARIANTS: dict[str, list[str]] = {
    "grpo": ["--algo.name", "grpo"],
    "dash_nogf": ["--algo.name", "dash", "--algo.filter_threshold", "-1"],
    "dash": ["--algo.name", "dash"],
    "trl": [],  # shared settings only: TRL runs its own algorithm (see dashrl.peers.trl_grpo)
    "dash_vllm": ["--algo.name", "dash", "--sampler.backend", "vllm"],
}

# The paper's regime (sampling dominates a GRPO step) scaled to a CPU, and a smoke variant.
FULL = ["--task.name", "gsm8k", "--sampler.max_new_tokens", "256", "--sampler.temperature", "1.0",
        "--algo.prompts_per_step", "16", "--algo.group_size", "8", "--train.micro_batch_size", "8",
        "--train.lr", "1e-5", "--train.warmup_steps", "0"]  # fmt: skip
QUICK = ["--task.name", "arithmetic", "--task.difficulty", "1", "--sampler.max_new_tokens", "32",
         "--sampler.temperature", "0.7", "--algo.prompts_per_step", "8", "--algo.group_size", "4",
         "--train.micro_batch_size", "8", "--train.lr", "2e-5", "--train.warmup_steps", "0"]  # fmt: skip
# The paper's regime on a task the model can learn: one-step word problems with worked reasoning,
# at most 256 new tokens, T = 0.5, where SmolLM2-135M-Instruct is right 22% of the time (measured,
# 16 problems x 8 samples) and a quarter of the groups are all-wrong or all-right (what the filter drops).
WORDS = ["--task.name", "wordproblems", "--task.difficulty", "1", "--sampler.max_new_tokens", "256",
         "--sampler.temperature", "0.5", "--algo.prompts_per_step", "8", "--algo.group_size", "8",
         "--train.micro_batch_size", "8", "--train.lr", "2e-5", "--train.warmup_steps", "0"]  # fmt: skip
WORKLOADS = {"gsm8k": FULL, "wordproblems": WORDS, "arithmetic": QUICK}
# The quickstart's settings for --backprop / --sampling; alone, --workload quickstart runs `dashrl.bench.runs`.
QUICKSTART_SHARED = ["--task.name", "arithmetic", "--task.difficulty", "1", "--sampler.max_new_tokens", "48",
                     "--sampler.temperature", "0.7", "--algo.prompts_per_step", "8", "--algo.group_size", "8",
                     "--train.micro_batch_size", "8", "--train.lr", "2e-5", "--algo.beta", "0"]  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", choices=sorted([*WORKLOADS, "quickstart"]), default="gsm8k",
                   help="shared settings: gsm8k (the paper's regime), wordproblems (256-token completions on a task "
                   "the model solves ~22%% of the time), arithmetic (short; what --quick runs), quickstart (the "
                   "quickstart's step split and MFU over fresh `dashrl train` runs; --before PATH adds another "
                   "checkout as the 'before' arm)")  # fmt: skip
    p.add_argument(
        "--before",
        default=None,
        help="--workload quickstart: a dashrl checkout (e.g. a git worktree of main) run as the 'before' arm",
    )
    p.add_argument("--ttr", action="store_true",
                   help="time to reward: dashrl and TRL's GRPOTrainer on the same task and settings, "
                   "each until the rolling training reward reaches --level (--task.name/--reward.funcs "
                   "for your own task)")  # fmt: skip
    p.add_argument("--level", type=float, default=0.5, help="--ttr: the reward level (default 0.5)")
    p.add_argument(
        "--window", type=int, default=5, help="--ttr: steps in the rolling mean of the training reward (default 5)"
    )
    p.add_argument("--quick", action="store_true", help="small arithmetic workload for a smoke check (a few minutes)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per variant (default 3, quick 2)")
    p.add_argument(
        "--variants", default=None, help=f"comma-separated, from {sorted(VARIANTS)} (default: all; trl when installed)"
    )
    p.add_argument(
        "--trl-gbs", type=int, default=None, help="TRL generation_batch_size (default: the fastest in a measured probe)"
    )
    p.add_argument("--config", default=None, help="TOML run file for the shared settings")
    p.add_argument(
        "--tuned", default=None, help="config written by `dashrl tune`: its batch sizes apply to the dash variants"
    )
    p.add_argument("--out", default="bench", help="folder for bench.md, bench.json and bench.png")
    p.add_argument(
        "--sampling",
        action="store_true",
        help="compare the sampler backends (hf, vllm) alone: tokens/s, start-up, sync, logprob gap",
    )
    p.add_argument(
        "--batches", default="8,64", help="--sampling: sequences per generate call, G per prompt (default 8,64)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="--sampling / --backprop: timed calls per backend and batch size, or per lever",
    )
    p.add_argument(
        "--backends",
        default=None,
        help="--sampling: comma-separated, from hf, hf_plain, hf_noshare, hf_noprepack, hf_compiled, vllm (default: "
        "all but hf_compiled)",
    )
    p.add_argument(
        "--backprop",
        action="store_true",
        help="time the trainer's backprop levers (head_chunk, packed) on one sampled batch",
    )
    p.add_argument(
        "--algos",
        action="store_true",
        help="compare sample selection: grpo, DASH's filter, DAPO's dynamic sampling, both (dashrl.bench.algos; word "
        "problems at 256 tokens)",
    )
    p.add_argument(
        "--levers",
        default=None,
        help="--backprop: comma-separated, from padded, head_chunk, packed, packed_chunk, plain, cast_each, one_pass "
        "(default: all)",
    )
    p.epilog = "Extra --section.field VALUE overrides apply to every variant."


def summarize_variant(rows: list[dict[str, Any]], n_params: int, samples_per_step: int) -> dict[str, float]:
    """Totals and rates of one variant's metrics rows."""

    def total(key: str) -> float:
        return float(sum(r.get(key) or 0.0 for r in rows))

    step_s = total("time/step_s")
    rewards = [r["reward/mean"] for r in rows if r.get("reward/mean") is not None]
    return {
        "steps": len(rows),
        "s_per_step": step_s / max(len(rows), 1),
        "s_per_sample": step_s / max(len(rows) * samples_per_step, 1),
        **{f"{k}_s": total(f"time/{k}_s") for k in ("sampling", "scoring", "backprop", "optimizer", "sync", "other")},
        "sampled_tok_per_s": total("gen/sampled_tokens") / max(total("time/sampling_s"), 1e-9),
        "trained_tok_per_s": total("train/tokens") / max(total("time/backprop_s"), 1e-9),
        "kept_frac": sum(r.get("filter/kept_frac") or 0.0 for r in rows) / max(len(rows), 1),
        "reward_first": rewards[0] if rewards else float("nan"),
        "reward_last": rewards[-1] if rewards else float("nan"),
        "reward_mean": sum(rewards) / len(rewards) if rewards else float("nan"),
        "sampling_gflops": 2 * n_params * total("gen/sampled_tokens") / max(total("time/sampling_s"), 1e-9) / 1e9,
        "backprop_gflops": 6 * n_params * total("train/tokens") / max(total("time/backprop_s"), 1e-9) / 1e9,
    }


def table(results: dict[str, dict[str, float]], peak: float, bases: tuple[str, ...] = ("grpo", "trl")) -> str:
    """Markdown table of the variants, with speed-ups per sample against each present base."""
    refs = [b for b in bases if b in results]
    head = ("| variant | s/step | s/sample | " + "".join(f"speed-up vs {b} | " for b in refs)
            + "sampling s | backprop s | other s | kept | sampled tok/s | trained tok/s | MFU sample | MFU backprop "
            + "| reward first -> last (mean) |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        speedups = "".join(f"{results[b]['s_per_sample'] / r['s_per_sample']:.2f}x | " for b in refs)
        other = r["scoring_s"] + r["optimizer_s"] + r["sync_s"] + r["other_s"]
        lines.append(
            f"| {name} | {r['s_per_step']:.1f} | {r['s_per_sample']:.3f} | {speedups}{r['sampling_s']:.1f} | "
            f"{r['backprop_s']:.1f} | {other:.1f} | {r['kept_frac']:.0%} | {r['sampled_tok_per_s']:.0f} | "
            f"{r['trained_tok_per_s']:.0f} | {r['sampling_gflops'] / peak:.1%} | {r['backprop_gflops'] / peak:.1%} | "
            f"{r['reward_first']:.3f} -> {r['reward_last']:.3f} ({r['reward_mean']:.3f}) |"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, float]], curves: dict[str, list[tuple[float, float]]], path: Path) -> bool:
    """Stacked time-split bars and reward against wall-clock time; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(results)
    bottom = [0.0] * len(names)
    for part in ("sampling", "scoring", "backprop", "optimizer", "sync", "other"):
        vals = [results[n][f"{part}_s"] / max(results[n]["steps"], 1) for n in names]
        ax1.bar(names, vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax1.set_ylabel("seconds per optimizer step")
    ax1.legend()
    for n, pts in curves.items():
        ax2.plot([t for t, _ in pts], [r for _, r in pts], marker="o", label=n)
    ax2.set_xlabel("wall-clock seconds (own steps only)")
    ax2.set_ylabel("mean reward of the step")
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return True


def _variant_names(spec: str | None) -> list[str]:
    from dashrl.peers.trl_grpo import trl_available

    if spec is None:
        vllm = importlib.util.find_spec("vllm") is not None
        names = [v for v in VARIANTS if (v != "trl" or trl_available()) and (v != "dash_vllm" or vllm)]
        if "trl" not in names:
            log("TRL is not installed: skipping the trl variant (pip install 'dashrl[bench]')")
        if not vllm:
            log("vLLM is not installed: skipping the dash_vllm variant (see docs/backends.md)")
        return names
    names = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; valid: {sorted(VARIANTS)}")
    if "trl" in names and not trl_available():
        raise ValueError("the trl variant needs TRL: pip install 'dashrl[bench]'")
    return names


def _workload(args: argparse.Namespace) -> list[str]:
    """The shared settings of `--workload` (`--quick` is the arithmetic one)."""
    name = getattr(args, "workload", "gsm8k")
    return QUICK if args.quick else QUICKSTART_SHARED if name == "quickstart" else WORKLOADS[name]


def run(args: argparse.Namespace) -> int:
    """`dashrl bench` in any mode; Ctrl-C ends it with one line and status 130, never a
    traceback (each mode first writes what it finished: the steps every variant took
    (`interleave`), the repeats every backend or lever finished)."""
    try:
        if args.sampling:
            return sampling_run(args)
        if args.ttr or (getattr(args, "workload", None) == "quickstart" and not args.backprop):
            from dashrl.bench.runs import quickstart_run, ttr_run

            if args.repeats < 1 or (args.ttr and args.window < 1):
                print("dashrl bench: --repeats and --window: expected at least 1", file=sys.stderr)
                return 2
            return ttr_run(args) if args.ttr else quickstart_run(args)
        if args.backprop:
            from dashrl.bench.backprop import backprop_run

            return backprop_run(args, _workload(args))
        if getattr(args, "algos", False):
            from dashrl.bench.algos import algos_run

            return algos_run(args, QUICK if args.quick else WORDS, interleave, warm_up)
        return variants_run(args)
    except KeyboardInterrupt:
        print("dashrl bench: interrupted", file=sys.stderr)
        return 130


def interleave(
    steppers: dict[str, Callable[[int], list[dict[str, Any]]]], steps: int
) -> tuple[dict[str, list], dict[str, list], int]:
    """Run `steps` steps of every variant in turn, the order rotating each step: the rows and
    reward-against-time curves of each, and how many steps every variant finished. A Ctrl-C
    stops it there and keeps only the steps that every variant finished, so the variants are
    still compared on the same steps.

    >>> rows, curves, done = interleave({"a": lambda step: [{"time/step_s": 1.0, "reward/mean": step / 2}]}, 2)
    >>> done, len(rows["a"]), curves["a"]
    (2, 2, [(1.0, 0.0), (2.0, 0.5)])
    """
    names = list(steppers)
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in names}
    curves: dict[str, list[tuple[float, float]]] = {v: [] for v in names}
    clock = dict.fromkeys(names, 0.0)
    done, finished = 0, dict.fromkeys(names, 0)  # steps every variant finished, and their rows
    try:
        for step in range(steps):
            order = names[step % len(names) :] + names[: step % len(names)]
            for v in order:
                for row in steppers[v](step):
                    row.pop("_samples", None)  # the run loop's sample log; a bench keeps numbers only
                    rows[v].append(row)
                    clock[v] += row["time/step_s"]
                    curves[v].append((clock[v], row.get("reward/mean") or 0.0))
                    log(
                        f"step {step + 1}/{steps} {v}: {row['time/step_s']:.1f}s reward "
                        f"{row.get('reward/mean') or 0:.3f}"
                    )
            done, finished = step + 1, {v: len(rows[v]) for v in names}
    except KeyboardInterrupt:
        log(f"interrupted in step {done + 1}: keeping the {done} step(s) that every variant finished")
        rows = {v: rows[v][: finished[v]] for v in names}
        curves = {v: curves[v][: finished[v]] for v in names}
    return rows, curves, done


def warm_up(cfg: Any, model: Any, tok: Any) -> None:
    """One untimed step of `cfg`'s schedule on a throwaway copy of `model`, so that start-up
    costs (allocator, thread pool, kernel caches) land on no variant's timed steps."""
    from dashrl.train.schedules import SCHEDULE_FNS, schedule_name
    from dashrl.train.loop import local_backend

    SCHEDULE_FNS[schedule_name(cfg)](*local_backend(cfg, copy.deepcopy(model), tok, 1), 0)


def variants_run(args: argparse.Namespace) -> int:
    """The variant comparison: grpo, dash_nogf, dash (and trl, dash_vllm) interleaved."""
    from dashrl.config import ConfigError, load_config

    try:
        names = _variant_names(args.variants)
    except ValueError as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2
    steps = args.steps or (2 if args.quick else 3)
    shared = _workload(args) + ["--train.steps", str(steps), "--run.quiet", "true"] + list(args.overrides)
    try:
        tuned: list[str] = []
        if args.tuned:  # measured batch sizes for dashrl; grpo keeps its training-sized generation
            t = load_config(args.tuned)
            tuned = [
                "--sampler.batch_size",
                str(t.sampler.batch_size),
                "--train.micro_batch_size",
                str(t.train.micro_batch_size),
            ]
        cfgs = {
            v: load_config(args.config, shared + VARIANTS[v] + (tuned if v.startswith("dash") else [])) for v in names
        }
    except ConfigError as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2

    import torch

    from dashrl.models import load_model
    from dashrl.runtime.io import atomic_write_text
    from dashrl.train.loop import seed_everything
    from dashrl.train.metrics import silence_transformers_bars
    from dashrl.train.schedules import SCHEDULE_FNS, schedule_name
    from dashrl.train.loop import local_backend

    silence_transformers_bars()  # the bench prints its own lines
    first = cfgs[names[0]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peak = {d: matmul_peak(d) for d in ("fp32", "bf16")}
    log(f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    base_model, tok = load_model(first.model.name, attn=first.model.attn)
    n_params = sum(p.numel() for p in base_model.parameters())
    warm = next((v for v in ("dash", "dash_nogf", "grpo", "dash_vllm") if v in names), names[0])  # the cheapest step
    log(f"warm-up: one untimed {warm} step on a throwaway copy of the weights (allocator, threads, caches)")
    warm_up(cfgs[warm], base_model, tok)
    steppers: dict[str, Callable[[int], list[dict[str, Any]]]] = {}
    trl_info: dict[str, Any] = {}
    peer = None  # TRL's stepper, closed at the end
    for v in names:
        seed_everything(cfgs[v].train.seed)
        if v == "trl":
            try:
                peer, trl_info = _trl_peer(cfgs[v], base_model, tok, steps, args.trl_gbs, out)
                steppers[v] = lambda step, p=peer: [p.step()]
            except ValueError as e:  # TRL's own config checks (batch divisibility, group size)
                print(f"dashrl bench: TRL refused the workload: {e}", file=sys.stderr)
                return 2
        else:
            source, trainer = local_backend(cfgs[v], copy.deepcopy(base_model), tok, steps)
            steppers[v] = functools.partial(SCHEDULE_FNS[schedule_name(cfgs[v])], source, trainer)
    del base_model
    try:
        rows, curves, done = interleave(steppers, steps)
    finally:
        if peer is not None:
            peer.close()
    if done == 0 and steps > 0:
        print(
            "dashrl bench: interrupted before every variant finished a step; nothing measured, nothing written",
            file=sys.stderr,
        )
        return 130
    compute = first.model.dtype
    results = {v: summarize_variant(rows[v], n_params, cfgs[v].algo.samples_per_step) for v in names}
    md = table(results, peak[compute])
    header = (
        f"Workload: {first.model.name}, task {first.task.name}, M={first.algo.prompts_per_step}, "
        f"G={first.algo.group_size}, max_new_tokens={first.sampler.max_new_tokens}, {steps} steps, compute {compute}; "
        f"matmul peak fp32 {peak['fp32']:.0f} / bf16 {peak['bf16']:.0f} GFLOP/s; torch threads "
        f"{torch.get_num_threads()}; one untimed {warm} warm-up step ran first."
    )
    if done < steps:
        header += f" Interrupted (Ctrl-C): {done} of {steps} steps per variant measured."
    if trl_info:
        header += f" TRL {trl_info['version']}, generation_batch_size {trl_info['generation_batch_size']}" + (
            " (probe s/sample: " + ", ".join(f"{g}: {t:.3f}" for g, t in trl_info["probe"].items()) + ")."
            if trl_info["probe"]
            else "."
        )
    atomic_write_text(out / "bench.md", header + "\n\n" + md + "\n")
    payload = {"workload": header, "peak_gflops": peak, "trl": trl_info, "results": results, "rows": rows}
    atomic_write_text(out / "bench.json", json.dumps(payload, indent=1))
    has_png = plot(results, curves, out / "bench.png")
    print(header + "\n\n" + md)
    log(
        f"wrote {out / 'bench.md'}, {out / 'bench.json'}"
        + (f", {out / 'bench.png'}" if has_png else " (no PNG: matplotlib missing)")
    )
    return 0 if done == steps else 130


def _trl_peer(
    cfg: Any, base_model: Any, tok: Any, steps: int, gbs: int | None, out: Path
) -> tuple[Any, dict[str, Any]]:
    """TRL's GRPOTrainer on its own copy of the weights, and what was chosen for it."""
    import trl

    from dashrl.peers.trl_grpo import TRLPeer, probe_generation_batch_size

    probe: dict[int, float] = {}
    if gbs is None:
        gbs, probe = probe_generation_batch_size(cfg, copy.deepcopy(base_model), tok, str(out / "trl"), log=log)
    peer = TRLPeer(cfg, copy.deepcopy(base_model), tok, steps, gbs, str(out / "trl"))
    return peer, {"version": trl.__version__, "generation_batch_size": gbs, "probe": probe}


def logprob_gap(sampler_lps: list[list[float]], trainer_lps: list[list[float]]) -> dict[str, float]:
    """Mean and max |sampler - trainer| logprob over all tokens, and the implied ratio's
    largest distance from 1 (the PPO ratio of an on-policy sample).

    >>> logprob_gap([[-1.0, -2.0]], [[-1.0, -2.5]])["max"]
    0.5
    """
    import math

    diffs = [t - s for ss, ts in zip(sampler_lps, trainer_lps) for s, t in zip(ss, ts)]
    if not diffs:
        return {"mean": float("nan"), "max": float("nan"), "ratio_max_dev": float("nan")}
    return {
        "mean": sum(abs(d) for d in diffs) / len(diffs),
        "max": max(abs(d) for d in diffs),
        "ratio_max_dev": max(abs(math.exp(d) - 1) for d in diffs),
    }


# Sampler backends `dashrl bench --sampling` compares: (registry backend, HFSampler settings).
# `hf` is the default sampler (static decoder); `hf_plain` the decode loop through the transformers
# model it replaced; `hf_noshare` the static decoder with one copy of the prompt's KV per row;
# `hf_noprepack` the static decoder with plain `F.linear` weights (no oneDNN reorder);
# `hf_compiled` the static decoder with its per-layer code compiled by torch.compile.
SAMPLING_BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "hf": ("hf", {}),
    "hf_plain": ("hf", {"decoder": "plain"}),
    "hf_noshare": ("hf", {"share_prefix": False}),
    "hf_noprepack": ("hf", {"prepack": False}),
    "hf_compiled": ("hf", {"compile": True}),
    "vllm": ("vllm", {}),
}


def decode_roofline(
    n_params: int, layers: int, kv_heads: int, head_dim: int, heads: int, batch: int, group: int,
    prompt_len: float, completion_len: float, bytes_per_value: int = 2,
) -> dict[str, float]:  # fmt: skip
    """FLOPs and bytes of one decode step of `batch` rows (`batch / group` prompts), each row at
    `prompt_len + completion_len` positions: weights read once per step, every cached key and
    value read once, per row (`kv_bytes_plain`) or with one copy of a group's prompt
    (`kv_bytes_shared`). FLOPs: 2 per weight per row, plus QK and PV over the context.

    >>> r = decode_roofline(100, 1, 1, 2, 1, batch=4, group=4, prompt_len=10, completion_len=0, bytes_per_value=1)
    >>> r["flops"], r["weight_bytes"], r["kv_bytes_plain"], r["kv_bytes_shared"]
    (1120.0, 100.0, 160.0, 40.0)
    """
    per_token = 2 * layers * kv_heads * head_dim * bytes_per_value  # keys and values, every layer
    ctx = prompt_len + completion_len
    return {
        "flops": 2.0 * n_params * batch + 4.0 * layers * heads * head_dim * ctx * batch,
        "weight_bytes": float(n_params * bytes_per_value),
        "kv_bytes_plain": float(per_token * ctx * batch),
        "kv_bytes_shared": float(per_token * (prompt_len * batch / group + completion_len * batch)),
    }


def roofline_table(model_cfg: Any, n_params: int, group: int, prompt_len: float, completion_len: float,
                   batches: list[int], bandwidth: float, peak: float) -> str:  # fmt: skip
    """Markdown roofline of a decode step at each batch size: bytes and FLOPs, and the tokens/s bound."""
    lines = ["| batch | GFLOP/step | MB weights | MB KV per row | MB KV shared | compute-bound tok/s | memory-bound "
             "tok/s (per row / shared) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for b in batches:
        head_dim = getattr(model_cfg, "head_dim", None) or model_cfg.hidden_size // model_cfg.num_attention_heads
        r = decode_roofline(n_params, model_cfg.num_hidden_layers, model_cfg.num_key_value_heads, head_dim,
                            model_cfg.num_attention_heads, b, group, prompt_len, completion_len)  # fmt: skip
        mem = [b / ((r["weight_bytes"] + r[k]) / (bandwidth * 1e9)) for k in ("kv_bytes_plain", "kv_bytes_shared")]
        lines.append(
            f"| {b} | {r['flops'] / 1e9:.1f} | {r['weight_bytes'] / 1e6:.0f} | {r['kv_bytes_plain'] / 1e6:.0f} | "
            f"{r['kv_bytes_shared'] / 1e6:.0f} | {b / (r['flops'] / (peak * 1e9)):.0f} | {mem[0]:.0f} / {mem[1]:.0f} |"
        )
    return "\n".join(lines)


def sampling_table(
    results: dict[str, dict[str, Any]], batches: list[int], peak: float | None = None, n_params: int = 0
) -> str:
    """Markdown table of the sampler backends, tokens/s ratios against the first row (the base)."""
    base = next(iter(results))
    mfu = peak is not None and n_params > 0
    head = ("| backend | start-up s | sync s | " + "".join(f"tok/s @{b} | vs {base} @{b} | " for b in batches)
            + ("".join(f"MFU @{b} | " for b in batches) if mfu else "")
            + "mean abs dlogp | max abs dlogp | max abs(ratio-1) |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        rates = "".join(
            f"{r['tok_per_s'][b]:.0f} | {r['tok_per_s'][b] / results[base]['tok_per_s'][b]:.2f}x | " for b in batches
        )
        if mfu:
            rates += "".join(f"{2 * n_params * r['tok_per_s'][b] / (peak * 1e9):.1%} | " for b in batches)
        g = r["gap"]
        lines.append(
            f"| {name} | {r['startup_s']:.1f} | {r['sync_s']:.2f} | {rates}{g['mean']:.4f} | {g['max']:.3f} | "
            f"{g['ratio_max_dev']:.3f} |"
        )
    return "\n".join(lines)


def _sampling_backends(spec: str | None) -> list[str]:
    """The backends to compare: the base first; vllm by default only when installed."""
    vllm = importlib.util.find_spec("vllm") is not None
    if spec is None:
        if not vllm:
            log("vLLM is not installed: measuring the hf decoders alone")
        return ["hf_plain", "hf", "hf_noshare", "hf_noprepack"] + (["vllm"] if vllm else [])
    names = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in names if v not in SAMPLING_BACKENDS]
    if unknown or not names:
        raise ValueError(f"unknown sampling backend(s) {unknown}; valid: {sorted(SAMPLING_BACKENDS)}")
    if "vllm" in names and not vllm:
        raise ValueError("the vllm backend needs vLLM (see docs/backends.md)")
    return names


def sampling_run(args: argparse.Namespace) -> int:
    """`dashrl bench --sampling`: the sampler backends, generate calls interleaved on the same prompts."""
    from dashrl.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, _workload(args) + list(args.overrides))
        batches = [int(b) for b in args.batches.split(",")]
        if any(b % cfg.algo.group_size for b in batches):
            raise ValueError(f"--batches must be multiples of G = {cfg.algo.group_size}")
        names = _sampling_backends(args.backends)
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2

    import torch

    from dashrl.data.prompts import build_prompt
    from dashrl.data.tasks import make_task
    from dashrl.models import autocast_ctx, load_model
    from dashrl.rollout import make_sampler, sampling_params
    from dashrl.train.learner import Sample, collate
    from dashrl.runtime.io import atomic_write_text
    from dashrl.train.logprobs import completion_logprobs
    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()  # the bench prints its own lines
    peak = matmul_peak("bf16")
    bandwidth = memory_bandwidth()
    log(f"matmul peak bf16 {peak:.0f} GFLOP/s, memory bandwidth {bandwidth:.1f} GB/s (copy)")
    model, tok = load_model(cfg.model.name, attn=cfg.model.attn)
    n_params = sum(p.numel() for p in model.parameters())
    G, sc = cfg.algo.group_size, cfg.sampler
    examples = make_task(cfg.task, cfg.train.seed).batch(0, max(batches) // G)
    rows = {b: [build_prompt(tok, ex) for ex in examples[: b // G] for _ in range(G)] for b in batches}
    results: dict[str, dict[str, Any]] = {}
    samplers = {}
    for n in names:
        backend, settings = SAMPLING_BACKENDS[n]
        t0 = time.perf_counter()
        samplers[n] = make_sampler(
            backend,
            model=model,
            tokenizer=tok,
            dtype=cfg.model.dtype,
            **{k: v for k, v in settings.items() if k == "decoder"},
        )
        for k, v in settings.items():
            if k != "decoder":
                setattr(samplers[n], k, v)
        warm = sampling_params(cfg, max_new_tokens=8, batch_size=min(batches))
        samplers[n].generate(rows[min(batches)], warm, seed=0)  # start-up includes a first short call (compiles)
        startup = time.perf_counter() - t0
        syncs = []
        for _ in range(3):
            t0 = time.perf_counter()
            samplers[n].load_weights(model.state_dict())
            syncs.append(time.perf_counter() - t0)
        results[n] = {
            "startup_s": startup,
            "sync_s": sorted(syncs)[1],
            "tokens": {b: 0 for b in batches},
            "seconds": {b: 0.0 for b in batches},
        }
        log(f"{n}: start-up {startup:.1f}s, sync {results[n]['sync_s']:.2f}s")
    last: dict[str, Any] = {}
    done = 0  # repeats that every backend finished at every batch size: a Ctrl-C keeps only those
    try:
        for rep in range(args.repeats):
            this: dict[str, dict[int, tuple[int, float]]] = {n: {} for n in names}
            for b in batches:
                params = sampling_params(cfg, batch_size=b)
                for n in names[rep % len(names) :] + names[: rep % len(names)]:  # the order rotates
                    t0 = time.perf_counter()
                    out = samplers[n].generate(rows[b], params, seed=rep)
                    dt = time.perf_counter() - t0
                    ntok = sum(len(c.token_ids) for c in out)
                    this[n][b] = (ntok, dt)
                    if b == max(batches):
                        last[n] = out
                    log(
                        f"repeat {rep + 1}/{args.repeats} batch {b} {n}: {ntok} tokens in "
                        f"{dt:.1f}s ({ntok / dt:.0f} tok/s)"
                    )
            for n in names:
                for b, (ntok, dt) in this[n].items():
                    results[n]["tokens"][b] += ntok
                    results[n]["seconds"][b] += dt
            done = rep + 1
    except KeyboardInterrupt:
        if not done:
            print(
                "dashrl bench: interrupted before every backend finished a repeat; nothing measured, nothing written",
                file=sys.stderr,
            )
            return 130
        log(f"interrupted in repeat {done + 1}: keeping the {done} repeat(s) that every backend finished")
    for n in names:  # the trainer's recomputation of the largest batch's last samples
        out = last[n]
        samples = [
            Sample(list(p), c.token_ids, c.logprobs, 0.0, 1.0, i // G, c.finish_reason)
            for i, (p, c) in enumerate(zip(rows[max(batches)], out))
        ]
        trainer_lps = []
        for i in range(0, len(samples), cfg.train.micro_batch_size):
            mb = collate(samples[i : i + cfg.train.micro_batch_size], tok.pad_token_id or 0)
            with torch.no_grad(), autocast_ctx(model, cfg.model.dtype):
                lp = completion_logprobs(model, mb, sc.temperature or 1.0)
            trainer_lps += [
                lp[j, : len(s.completion_ids)].tolist()
                for j, s in enumerate(samples[i : i + cfg.train.micro_batch_size])
            ]
        results[n]["gap"] = logprob_gap([c.logprobs for c in out], trainer_lps)
        results[n]["tok_per_s"] = {b: results[n]["tokens"][b] / max(results[n]["seconds"][b], 1e-9) for b in batches}
    big = rows[max(batches)]
    prompt_len = sum(len(p) for p in big) / len(big)
    completion_len = sum(len(c.token_ids) for c in last[names[0]]) / len(big) / 2  # the mean position a step decodes at
    header = (
        f"Sampler backends on {cfg.model.name} ({cfg.model.dtype}), task {cfg.task.name}, G={G}, "
        f"max_new_tokens={sc.max_new_tokens}, T={sc.temperature}, {done} interleaved calls per backend and batch; "
        f"torch threads {torch.get_num_threads()}; matmul peak bf16 {peak:.0f} GFLOP/s, copy bandwidth {bandwidth:.1f} "
        f"GB/s; mean prompt {prompt_len:.0f} tokens, mean completion {2 * completion_len:.0f} tokens."
    )
    if done < args.repeats:
        header += f" Interrupted (Ctrl-C): {done} of {args.repeats} repeats measured."
    md = sampling_table(results, batches, peak, n_params)
    roof = roofline_table(model.config, n_params, G, prompt_len, completion_len, batches, bandwidth, peak)
    text = (
        f"{header}\n\n{md}\n\n"
        f"Roofline of one decode step (bf16, at the mean position {prompt_len + completion_len:.0f}):\n\n{roof}\n"
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "sampling.md", text)
    payload = {"workload": header, "peak_gflops": peak, "bandwidth_gbs": bandwidth, "results": results}
    atomic_write_text(out_dir / "sampling.json", json.dumps(payload, indent=1, default=str))
    print(text)
    return 0 if done == args.repeats else 130
