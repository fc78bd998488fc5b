"""`dashrl bench --algos`: which samples to train on, compared side by side in one process.

Four ways of choosing a step's samples, all on the `dash` schedule (sample once, one plain
policy-gradient step, no KL, on-policy, so the gradient equals GRPO's) and run *interleaved*,
one step of each in turn from the same initial weights, prompts and seeds:

- `grpo`: every sampled sample is trained on (no filter);
- `dash_filter`: DASH's per-sample filter, |A| <= threshold dropped before any forward pass;
- `dapo_dynamic`: DAPO's dynamic sampling: each step trains on exactly M groups whose rewards
  differ, the first round over-sampled (`--algo.oversample`, 1.25 here) in one generate call,
  the refill rounds sized from the informative share seen (`dashrl.algo.dapo`);
- `both`: dynamic sampling, then the per-sample filter on the M groups.

Reported: sampled samples per second of step time; the share of sampled samples that went
through backprop and that carry gradient (a non-zero advantage); reward against wall-clock
(reward at the time the fastest variant finished, and the time each took to reach a reward
level); rounds and prompts per step; and what the refill rounds cost against one more
generation round of M prompts (the refill verl and OpenRLHF make: another full batch).

The default workload is the word-problem task at 256 new tokens (`--workload wordproblems`'s
settings); `--quick` runs the small arithmetic one, for a smoke check only.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

from dashrl.bench.interleave import interleave, warm_up
from dashrl.runtime.hardware import log

ALGO_VARIANTS: dict[str, list[str]] = {
    "grpo": ["--algo.name", "dash", "--algo.filter_threshold", "-1"],
    "dash_filter": ["--algo.name", "dash"],
    "dapo_dynamic": [
        "--algo.name",
        "dash",
        "--algo.filter_threshold",
        "-1",
        "--algo.dynamic_sampling",
        "true",
        "--algo.oversample",
        "1.25",
    ],
    "both": ["--algo.name", "dash", "--algo.dynamic_sampling", "true", "--algo.oversample", "1.25"],
}


def _counted(step_fn: Callable[[int], list[dict[str, Any]]]) -> Callable[[int], list[dict[str, Any]]]:
    """A step function whose rows also say how many samples the step sampled (`bench/sampled`)."""

    def step(i: int) -> list[dict[str, Any]]:
        rows = step_fn(i)
        for row in rows:
            row["bench/sampled"] = len(row.get("_samples") or [])
        return rows

    return step


def summarize_algo(
    rows: list[dict[str, Any]], curve: list[tuple[float, float]], M: int, at_time: float, level: float
) -> dict[str, float]:
    """One variant's figures from its rows and reward-against-time curve.

    >>> rows = [{"time/step_s": 2.0, "bench/sampled": 8, "train/samples": 4, "train/grad_samples": 4}] * 2
    >>> r = summarize_algo(rows, [(2.0, 0.1), (4.0, 0.5)], M=2, at_time=3.0, level=0.5)
    >>> r["samples_per_s"], r["trained_share"], r["reward_at_time"], r["time_to_level"]
    (4.0, 0.5, 0.1, 4.0)
    """

    def total(key: str) -> float:
        return float(sum(r.get(key) or 0.0 for r in rows))

    n = max(len(rows), 1)
    sampled = max(total("bench/sampled"), 1.0)
    reached = [t for t, reward in curve if reward >= level]
    done_by = [reward for t, reward in curve if t <= at_time]
    one_round = [
        r["dynamic/first_round_s"] * M / r["dynamic/first_round_prompts"]
        for r in rows
        if r.get("dynamic/first_round_prompts")
    ]
    return {
        "steps": len(rows),
        "s_per_step": total("time/step_s") / n,
        "samples_per_s": sampled / max(total("time/step_s"), 1e-9),
        "trained_share": total("train/samples") / sampled,
        "grad_share": total("train/grad_samples") / sampled,
        "reward_first": curve[0][1] if curve else float("nan"),
        "reward_last": curve[-1][1] if curve else float("nan"),
        "reward_at_time": done_by[-1] if done_by else float("nan"),
        "time_to_level": reached[0] if reached else float("nan"),
        "rounds": total("dynamic/rounds") / n if any("dynamic/rounds" in r for r in rows) else 1.0,
        "prompts_per_step": total("dynamic/prompts_sampled") / n
        if any("dynamic/prompts_sampled" in r for r in rows)
        else float(M),
        "cap_hits": total("dynamic/cap_hit"),
        "refill_s": total("dynamic/refill_s") / n,
        "one_round_s": sum(one_round) / len(one_round) if one_round else float("nan"),
    }


def algos_table(results: dict[str, dict[str, float]], at_time: float, level: float) -> str:
    """Markdown table of the variants."""
    head = ("| variant | s/step | samples/s | trained / sampled | with gradient / sampled | reward first -> last | "
            f"reward at {at_time:.0f} s | s to reward {level:.3f} | rounds/step | prompts/step | refill s/step | "
            "one more round s |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        reach = "never" if r["time_to_level"] != r["time_to_level"] else f"{r['time_to_level']:.0f}"
        at = "no step yet" if r["reward_at_time"] != r["reward_at_time"] else f"{r['reward_at_time']:.3f}"
        dyn = r["one_round_s"] == r["one_round_s"]  # not NaN: a dynamic-sampling variant
        lines.append(
            f"| {name} | {r['s_per_step']:.1f} | {r['samples_per_s']:.2f} | {r['trained_share']:.0%} | "
            f"{r['grad_share']:.0%} | {r['reward_first']:.3f} -> {r['reward_last']:.3f} | {at} | {reach} | "
            f"{r['rounds']:.2f} | {r['prompts_per_step']:.1f} | {r['refill_s']:.1f} | {r['one_round_s']:.1f} |"
            if dyn else
            f"| {name} | {r['s_per_step']:.1f} | {r['samples_per_s']:.2f} | {r['trained_share']:.0%} | "
            f"{r['grad_share']:.0%} | {r['reward_first']:.3f} -> {r['reward_last']:.3f} | {at} | {reach} | 1 | "
            f"{r['prompts_per_step']:.0f} | - | - |"
        )  # fmt: skip
    return "\n".join(lines)


def _names(spec: str | None) -> list[str]:
    if spec is None:
        return list(ALGO_VARIANTS)
    names = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in names if v not in ALGO_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown} for --algos; valid: {', '.join(ALGO_VARIANTS)}")
    return names


def algos_run(args: argparse.Namespace, workload: list[str]) -> int:
    """The comparison: build each variant's config, warm up once, interleave, print the table."""
    from dashrl.config import ConfigError, load_config

    try:
        names = _names(args.variants)
    except ValueError as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2
    steps = args.steps or (2 if args.quick else 20)
    shared = workload + ["--train.steps", str(steps), "--run.quiet", "true"] + list(args.overrides)
    try:
        cfgs = {v: load_config(args.config, shared + ALGO_VARIANTS[v]) for v in names}
    except ConfigError as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2

    from dashrl.models import load_model
    from dashrl.train.loop import seed_everything
    from dashrl.train.metrics import silence_transformers_bars
    from dashrl.train.schedules import SCHEDULE_FNS, schedule_name
    from dashrl.train.loop import local_backend

    silence_transformers_bars()
    first = cfgs[names[0]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_model, tok = load_model(first.model.name, attn=first.model.attn, chat_template=first.model.chat_template)
    log(f"warm-up: one untimed {names[0]} step on a throwaway copy of the weights")
    warm_up(first, base_model, tok)
    steppers = {}
    for v in names:
        seed_everything(cfgs[v].train.seed)
        source, trainer = local_backend(cfgs[v], copy.deepcopy(base_model), tok, steps)
        steppers[v] = _counted(functools.partial(SCHEDULE_FNS[schedule_name(cfgs[v])], source, trainer))
    del base_model
    rows, curves, done = interleave(steppers, steps)
    if done == 0 and steps > 0:
        print(
            "dashrl bench: interrupted before every variant finished a step; nothing measured, nothing written",
            file=sys.stderr,
        )
        return 130
    report_algos(out, first, rows, curves, done, steps)
    return 0 if done == steps else 130


def report_algos(out: Path, first: Any, rows: dict[str, list], curves: dict[str, list], done: int, steps: int) -> None:
    """The variants' figures, read at the time the fastest finished and at a level half of them
    reach: bench_algos.md and bench_algos.json in `out`, the table on stdout."""
    from dashrl.runtime.io import atomic_write_text

    names = list(rows)
    at_time = min(curves[v][-1][0] for v in names)  # when the fastest variant finished
    best = sorted(max(r for _, r in curves[v]) for v in names)
    level = best[(len(best) - 1) // 2]  # a level half the variants reach
    M = first.algo.prompts_per_step
    results = {v: summarize_algo(rows[v], curves[v], M, at_time, level) for v in names}
    md = algos_table(results, at_time, level)
    header = (
        f"Workload: {first.model.name}, task {first.task.name}, M={M}, G={first.algo.group_size}, "
        f"max_new_tokens={first.sampler.max_new_tokens}, {done} of {steps} steps per variant, interleaved; "
        f"one untimed warm-up step ran first. Reward is the mean over each step's sampled samples."
    )
    atomic_write_text(out / "bench_algos.md", header + "\n\n" + md + "\n")
    atomic_write_text(
        out / "bench_algos.json",
        json.dumps({"workload": header, "results": results, "rows": rows, "curves": curves}, indent=1),
    )
    print(header + "\n\n" + md)
    log(f"wrote {out / 'bench_algos.md'}, {out / 'bench_algos.json'}")
