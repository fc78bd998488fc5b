"""`dashrl bench`: the paper's comparison side by side, in one run, as ratios.

Variants share the model's initial weights, task, seed, prompts, M, G, max new tokens and
learning rate, and run *interleaved*, one optimizer step of each in turn (the order rotates
every step; `dashrl.bench.interleave`), so machine noise hits all of them alike:

- `grpo`: the standard implementation (generation per training micro-batch, PPO ratio,
  reference-model KL, beta 0.04, no filtering);
- `dash_nogf`: DASH without gradient filtering;
- `dash`: DASH with gradient filtering;
- `trl`: TRL's GRPOTrainer on the same workload (`dashrl.peers.trl_grpo`, optional extra
  `dashrl[bench]`), with the generation batch size that a measured probe finds fastest;
- `dash_vllm`: DASH with the `vllm` sampler backend (when vLLM is installed).

One untimed warm-up step (of `dash` where it runs, on a throwaway copy of the weights) comes
first, so that no variant's timed steps pay the process's start-up costs; the table's header says
so. Ctrl-C stops the bench cleanly: the steps that every variant finished are written and printed
as usual, with the header saying how many of the planned steps they are (exit status 130).

Reported per variant: seconds per optimizer step and per sample, the time split, sampled
and trained tokens/s, the reward over the run, model-FLOP utilisation of sampling and
backprop against this machine's measured matmul peak, and ratios against `grpo` and `trl`.
The command's other modes are beside this one: `sampling`, `backprop`, `algos`, `runs`
(`dashrl.cli.bench` picks one).
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable

from dashrl.bench.interleave import interleave, warm_up
from dashrl.runtime.hardware import log, matmul_peak
from dashrl.runtime.io import save_figure

VARIANTS: dict[str, list[str]] = {
    "grpo": ["--algo.name", "grpo"],
    "dash_nogf": ["--algo.name", "dash", "--algo.filter_threshold", "-1"],
    "dash": ["--algo.name", "dash"],
    "trl": [],  # shared settings only: TRL runs its own algorithm (see dashrl.peers.trl_grpo)
    "dash_vllm": ["--algo.name", "dash", "--sampler.backend", "vllm"],
}


class Refused(Exception):
    """A peer's own config checks turned the workload down (TRL: batch divisibility, group size)."""


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
        "s_per_ktok": 1000 * step_s / max(total("gen/sampled_tokens"), 1.0),
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
    """Markdown table of the variants, with speed-ups against each present base per sample and per
    sampled token (s/1k tok: step seconds per thousand sampled tokens; arms that sample longer
    completions pay more per sample for the same rate)."""
    refs = [b for b in bases if b in results]
    head = ("| variant | s/step | s/sample | " + "".join(f"speed-up vs {b} | " for b in refs)
            + "s/1k tok | " + "".join(f"per token vs {b} | " for b in refs)
            + "sampling s | backprop s | other s | kept | sampled tok/s | trained tok/s | MFU sample | MFU backprop "
            + "| reward first -> last (mean) |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        speedups = "".join(f"{results[b]['s_per_sample'] / r['s_per_sample']:.2f}x | " for b in refs)
        per_token = "".join(f"{results[b]['s_per_ktok'] / r['s_per_ktok']:.2f}x | " for b in refs)
        other = r["scoring_s"] + r["optimizer_s"] + r["sync_s"] + r["other_s"]
        lines.append(
            f"| {name} | {r['s_per_step']:.1f} | {r['s_per_sample']:.3f} | {speedups}{r['s_per_ktok']:.2f} | "
            f"{per_token}{r['sampling_s']:.1f} | "
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


def variant_names(spec: str | None) -> list[str]:
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


def variant_configs(args: argparse.Namespace, workload: list[str], names: list[str], steps: int) -> dict[str, Any]:
    """Each variant's config: the workload, the variant's flags and the user's overrides, and for
    the dash variants the batch sizes of a `--tuned` config (grpo keeps its training-sized generation)."""
    from dashrl.bench.tune import tuned_flags
    from dashrl.config import load_config

    shared = workload + ["--train.steps", str(steps), "--run.quiet", "true"] + list(args.overrides)
    tuned = tuned_flags(args.tuned) if args.tuned else []
    return {v: load_config(args.config, shared + VARIANTS[v] + (tuned if v.startswith("dash") else [])) for v in names}


def variants_run(args: argparse.Namespace, workload: list[str]) -> int:
    """The variant comparison: grpo, dash_nogf, dash (and trl, dash_vllm) interleaved."""
    from dashrl.config import ConfigError

    steps = args.steps or (2 if args.quick else 3)
    try:
        names = variant_names(args.variants)
        cfgs = variant_configs(args, workload, names, steps)
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2

    from dashrl.models import load_model
    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()  # the bench prints its own lines
    first = cfgs[names[0]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peak = {d: matmul_peak(d) for d in ("fp32", "bf16")}
    log(f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    base_model, tok = load_model(first.model.name, attn=first.model.attn, chat_template=first.model.chat_template)
    n_params = sum(p.numel() for p in base_model.parameters())
    warm = next((v for v in ("dash", "dash_nogf", "grpo", "dash_vllm") if v in names), names[0])  # the cheapest step
    log(f"warm-up: one untimed {warm} step on a throwaway copy of the weights (allocator, threads, caches)")
    warm_up(cfgs[warm], base_model, tok)
    try:
        steppers, peer, trl_info = build_steppers(cfgs, base_model, tok, steps, args.trl_gbs, out)
    except Refused as e:
        print(f"dashrl bench: TRL refused the workload: {e}", file=sys.stderr)
        return 2
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
    results = {v: summarize_variant(rows[v], n_params, cfgs[v].algo.samples_per_step) for v in names}
    header = variants_header(first, steps, done, peak, warm, trl_info)
    payload = {"workload": header, "peak_gflops": peak, "trl": trl_info, "results": results, "rows": rows}
    write_variants(out, header, table(results, peak[first.model.dtype]), payload, curves)
    return 0 if done == steps else 130


def build_steppers(
    cfgs: dict[str, Any], base_model: Any, tok: Any, steps: int, trl_gbs: int | None, out: Path
) -> tuple[dict[str, Callable[[int], list[dict[str, Any]]]], Any, dict[str, Any]]:
    """Each variant's step function, on its own copy of the weights, seeded alike; TRL's peer (to
    close at the end, None without `trl`) and what was chosen for it. Raises `Refused` when TRL's
    own config checks turn the workload down."""
    from dashrl.train.loop import seed_everything
    from dashrl.train.schedules import SCHEDULE_FNS, schedule_name
    from dashrl.train.loop import local_backend

    steppers: dict[str, Callable[[int], list[dict[str, Any]]]] = {}
    trl_info: dict[str, Any] = {}
    peer = None
    for v, cfg in cfgs.items():
        seed_everything(cfg.train.seed)
        if v == "trl":
            try:
                peer, trl_info = _trl_peer(cfg, base_model, tok, steps, trl_gbs, out)
            except ValueError as e:  # TRL's own config checks (batch divisibility, group size)
                raise Refused(str(e)) from e
            steppers[v] = lambda step, p=peer: [p.step()]
        else:
            source, learner = local_backend(cfg, copy.deepcopy(base_model), tok, steps)
            steppers[v] = functools.partial(SCHEDULE_FNS[schedule_name(cfg)], source, learner)
    return steppers, peer, trl_info


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


def variants_header(first: Any, steps: int, done: int, peak: dict[str, float], warm: str, trl_info: dict) -> str:
    """The workload line above the table: what ran, on which machine, and what TRL was given."""
    import torch

    compute = first.model.dtype
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
    return header


def write_variants(out: Path, header: str, md: str, payload: dict[str, Any], curves: dict[str, list]) -> None:
    """bench.md, bench.json and (with matplotlib) bench.png in `out`; the table on stdout."""
    from dashrl.runtime.io import atomic_write_text

    atomic_write_text(out / "bench.md", header + "\n\n" + md + "\n")
    atomic_write_text(out / "bench.json", json.dumps(payload, indent=1))
    has_png = plot(payload["results"], curves, out / "bench.png")
    print(header + "\n\n" + md)
    log(
        f"wrote {out / 'bench.md'}, {out / 'bench.json'}"
        + (f", {out / 'bench.png'}" if has_png else " (no PNG: matplotlib missing)")
    )
