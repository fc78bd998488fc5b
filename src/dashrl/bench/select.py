"""`dashrl bench --select`: filtering before sampling against filtering after it, side by side.

Four arms on the `dash` schedule (sample once, one plain policy-gradient step, no KL), run
*interleaved* from the same initial weights and seeds, on a finite pool of prompts revisited over
several epochs, a third of it trivial (`What is 7 + 0?`), a third learnable (one-digit arithmetic,
the quickstart's task) and a third impossible for the model (six-digit sums):

- `dash`: DASH's gradient filter after sampling;
- `dapo_dynamic`: DAPO's dynamic sampling (M groups whose rewards differ, refilled in rounds), no filter;
- `dapo_greso`: the same, every round drawn through GRESO's selector (`--select.name greso`);
- `dash_greso`: DASH's filter, its M prompts drawn through GRESO.

Reported per arm (and per seed with `--seeds`): sampled tokens per trained group (a group that
reached backprop with gradient), seconds per step, the reward on the learnable third in the first
and last third of the steps, the time to a reward level on it, and the share of prompts GRESO passed
over. The counts do not depend on the machine's load; the seconds do: time alone.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

from dashrl.bench.interleave import interleave, warm_up
from dashrl.runtime.hardware import log

DYNAMIC = ["--algo.dynamic_sampling", "true", "--algo.oversample", "1.25", "--algo.filter_threshold", "-1"]
SELECT_ARMS: dict[str, list[str]] = {
    "dash": ["--algo.name", "dash"],
    "dapo_dynamic": ["--algo.name", "dash", *DYNAMIC],
    "dapo_greso": ["--algo.name", "dash", *DYNAMIC, "--select.name", "greso"],
    "dash_greso": ["--algo.name", "dash", "--select.name", "greso"],
}
PARTS = {"T": "trivial", "L": "learnable", "X": "impossible"}


def pool_records(per_part: int, seed: int = 0) -> list[dict[str, str]]:
    """The mixed pool: `per_part` trivial, learnable and impossible problems, ids `T-i`, `L-i`, `X-i`.

    >>> [r["id"] for r in pool_records(1)], pool_records(1)[0]["problem"]
    (['T-0', 'L-0', 'X-0'], 'What is 1 + 0?')
    """
    import random

    from dashrl.data.arithmetic import arithmetic_example

    rng = random.Random(f"select-pool:{seed}")
    out = []
    for i in range(per_part):
        a = rng.randint(1, 9)
        out.append({"id": f"T-{i}", "problem": f"What is {a} + 0?", "answer": str(a)})
        learn = arithmetic_example(seed, i, 1)
        out.append({"id": f"L-{i}", "problem": learn.problem, "answer": learn.answer})
        hard = arithmetic_example(seed, i, 6)
        out.append({"id": f"X-{i}", "problem": hard.problem, "answer": hard.answer})
    return out


def workload(pool: Path, quick: bool) -> list[str]:
    """The shared flags: the pool, and the quickstart's sampling and training settings."""
    return ["--task.name", str(pool), "--sampler.max_new_tokens", "32" if quick else "48",
            "--sampler.temperature", "0.7", "--algo.prompts_per_step", "4" if quick else "8",
            "--algo.group_size", "4" if quick else "8", "--train.micro_batch_size", "8", "--train.lr", "2e-5",
            "--train.warmup_steps", "0", "--run.quiet", "true"]  # fmt: skip


def _measured(step_fn: Callable[[int], list[dict[str, Any]]], threshold: float) -> Callable[[int], list[dict]]:
    """A step function whose rows also hold what this bench reads from the step's samples: the
    groups trained with gradient, and the reward of the learnable part (`bench/*`)."""

    def step(i: int) -> list[dict[str, Any]]:
        rows = step_fn(i)
        for row in rows:
            samples = row.get("_samples") or []
            informative = {s.group for s in samples if abs(s.advantage) > max(threshold, 0.0)}
            row["bench/trained_groups"] = row.get("train/groups", len(informative))
            learn = [s.reward for s in samples if str(s.info.get("id", "")).startswith("L-")]
            row["bench/learnable_reward"] = sum(learn) / len(learn) if learn else float("nan")
        return rows

    return step


def summarize_arm(rows: list[dict[str, Any]], level: float) -> dict[str, float]:
    """One arm's figures over its steps.

    >>> rows = [{"gen/sampled_tokens": 100, "bench/trained_groups": 2, "time/step_s": 1.0,
    ...          "bench/learnable_reward": r, "select/skipped": 1, "select/candidates": 5} for r in (0.2, 0.4, 0.6)]
    >>> s = summarize_arm(rows, level=0.4)
    >>> s["tokens_per_group"], s["learnable_first"], s["learnable_last"], s["time_to_level"], s["skipped_share"]
    (50.0, 0.2, 0.6, 2.0, 0.2)
    """
    n = max(len(rows), 1)
    third = max(n // 3, 1)
    learn = [r["bench/learnable_reward"] for r in rows]
    clock, reached = 0.0, float("nan")
    for r in rows:
        clock += r["time/step_s"]
        if math.isnan(reached) and r["bench/learnable_reward"] >= level:
            reached = clock
    candidates = sum(r.get("select/candidates", 0) for r in rows)
    return {
        "steps": len(rows),
        "tokens_per_group": sum(r["gen/sampled_tokens"] for r in rows)
        / max(sum(r["bench/trained_groups"] for r in rows), 1),
        "s_per_step": sum(r["time/step_s"] for r in rows) / n,
        "learnable_first": _mean(learn[:third]),
        "learnable_last": _mean(learn[-third:]),
        "time_to_level": reached,
        "skipped_share": sum(r.get("select/skipped", 0) for r in rows) / candidates if candidates else 0.0,
    }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else float("nan")


def select_table(results: dict[str, list[dict[str, float]]], level: float) -> str:
    """Markdown: one row per arm, each figure the median over seeds with its range when there are several.
    The ratio to the base arm is paired: each seed's arms ran interleaved on the same pool, so it is the
    median (range) of the seeds' own ratios, not a ratio of medians."""

    def cell(values: list[float], fmt: str, unit: str = "") -> str:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return "never"
        med, low, high = (format(v, fmt) + unit for v in (statistics.median(finite), min(finite), max(finite)))
        return med if len(values) == 1 else f"{med} ({low}-{high})"

    base_arm = "dapo_dynamic" if "dapo_dynamic" in results else next(iter(results))
    base = [r["tokens_per_group"] for r in results[base_arm]]
    head = (f"| arm | sampled tokens / trained group | vs {base_arm} | s/step | learnable reward, first third "
            f"| last third | s to learnable reward {level:.2f} | prompts skipped |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm, seeds in results.items():
        tpg = [s["tokens_per_group"] for s in seeds]
        figs = {k: [s[k] for s in seeds] for k in seeds[0]}
        paired = [b / t if t else float("nan") for b, t in zip(base, tpg)]
        lines.append(
            f"| {arm} | {cell(tpg, '.0f')} | {cell(paired, '.2f', 'x')} | {cell(figs['s_per_step'], '.2f')} "
            f"| {cell(figs['learnable_first'], '.3f')} | {cell(figs['learnable_last'], '.3f')} "
            f"| {cell(figs['time_to_level'], '.0f')} | {cell(figs['skipped_share'], '.0%')} |"
        )
    return "\n".join(lines)


def select_arms(spec: str | None) -> list[str]:
    """The arms `--variants` names, in the bench's order (all four when none); an unknown one is a
    ValueError naming it.

    >>> select_arms("dapo_greso, dash"), len(select_arms(None))
    (['dash', 'dapo_greso'], 4)
    """
    names = [a.strip() for a in (spec or "").split(",") if a.strip()] or list(SELECT_ARMS)
    unknown = [a for a in names if a not in SELECT_ARMS]
    if unknown:
        raise ValueError(f"--variants: unknown --select arm {unknown[0]!r}; valid: {', '.join(SELECT_ARMS)}")
    return [a for a in SELECT_ARMS if a in names]


def select_run(args: argparse.Namespace) -> int:
    """Write the pool, then for each seed interleave the arms from the same weights; the table and
    raw rows are rewritten after every seed, so a bench stopped part-way keeps its finished seeds."""
    from dashrl.config import ConfigError, load_config

    out = Path(args.out)
    per_part = 2 if args.quick else 8
    steps = args.steps or (4 if args.quick else 12)
    seeds = list(range(max(args.seeds, 1)))
    pool = out / "select_pool.jsonl"
    shared = workload(pool, args.quick) + ["--train.steps", str(steps)] + list(args.overrides)
    try:
        arms = select_arms(getattr(args, "variants", None))
        first = load_config(args.config, [*shared, *SELECT_ARMS["dash"], "--train.seed", "0"])
        cfgs = {(a, s): load_config(args.config, [*shared, *SELECT_ARMS[a], "--train.seed", str(s)])
                for s in seeds for a in arms}  # fmt: skip
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2
    from dashrl.runtime.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(pool, "".join(json.dumps(r) + "\n" for r in pool_records(per_part)))
    epochs = steps * first.algo.prompts_per_step / (3 * per_part)
    header = (f"Pool: {3 * per_part} prompts ({per_part} each trivial, learnable, impossible), {first.model.name}, "
              f"M={first.algo.prompts_per_step}, G={first.algo.group_size}, max_new_tokens="
              f"{first.sampler.max_new_tokens}, {steps} steps ({epochs:.1f} epochs at M prompts a step), arms "
              f"interleaved")  # fmt: skip
    write = functools.partial(_write_select, out, header, args.level, arms)
    rows = _run_seeds(first, cfgs, arms, seeds, steps, after_seed=write)
    if rows is None:
        return 130
    print(write(rows))
    log(f"wrote {out / 'bench_select.md'}, {out / 'bench_select.json'}")
    return 0


def _write_select(out: Path, header: str, level: float, arms: list[str], rows: dict) -> str:
    """Write the table and raw rows for the seeds finished so far; return the table."""
    from dashrl.runtime.io import atomic_write_text

    results = {a: [summarize_arm(rows[k], level) for k in sorted(rows) if k[0] == a and rows[k]] for a in arms}
    n = len({s for _, s in rows})
    head = f"{header}, {n} seed(s); median (range) over seeds."
    md = head + "\n\n" + select_table({a: r for a, r in results.items() if r}, level)
    atomic_write_text(out / "bench_select.md", md + "\n")
    raw = {"header": head, "results": results, "rows": {f"{a}/seed{s}": r for (a, s), r in rows.items()}}
    atomic_write_text(out / "bench_select.json", json.dumps(raw, indent=1, default=float))
    return md


def _run_seeds(
    first: Any, cfgs: dict[tuple[str, int], Any], arms: list[str], seeds: list[int], steps: int,
    after_seed: Callable[[dict], Any],
) -> dict | None:  # fmt: skip
    """Every arm's rows, per seed: the arms of a seed interleaved from the same initial weights
    (the warm-up is one untimed step of `first`, the dash arm's config, whichever arms run)."""
    from dashrl.models import load_model
    from dashrl.train.loop import with_selector, local_backend, seed_everything
    from dashrl.train.metrics import silence_transformers_bars
    from dashrl.train.schedules import schedule_fn

    silence_transformers_bars()
    base_model, tok = load_model(first.model.name, attn=first.model.attn, chat_template=first.model.chat_template)
    log("warm-up: one untimed dash step on a throwaway copy of the weights")
    warm_up(first, base_model, tok)
    out: dict[tuple[str, int], list] = {}
    for s in seeds:
        steppers = {}
        for a in arms:
            cfg = cfgs[(a, s)]
            seed_everything(cfg.train.seed)
            source, learner = local_backend(cfg, copy.deepcopy(base_model), tok, steps)
            step_fn, _ = with_selector(cfg, schedule_fn(cfg), source.task)
            steppers[a] = _measured(functools.partial(step_fn, source, learner), cfg.algo.filter_threshold)
        rows, _, done = interleave(steppers, steps)
        if done == 0 and s == seeds[0]:
            return None
        if done < steps and s != seeds[0]:  # a seed cut short is no repeat of the others
            log(f"seed {s} stopped after {done} of {steps} steps: left out; the table keeps the seeds before it")
            return out
        out.update({(a, s): rows[a] for a in arms})
        after_seed(out)
        if done < steps:
            return out
    return out
