"""`dashrl distill`: a teacher's correct solutions to a task's problems, as SFT-M data.

    dashrl distill --teacher runs/dash-wp --task.name wordproblems --task.difficulty 2 \\
        --problems 500 --n 8 --out traces.jsonl
    dashrl distill --teacher Qwen/Qwen2.5-7B-Instruct --task.name math --n 8 --k 1 --out math7b.jsonl

The teacher samples `n` completions per problem with the task's own prompts (the chat
template and answer instruction RL uses, `dashrl.data.prompts.build_prompt`) through the
`hf` sampler, at `--sampler.temperature` and `--sampler.max_new_tokens`. The task's reward
grades them and only completions graded correct (reward 1.0) are kept: the paper's
"correct only" rule for SFT-M. Per problem the first `k` distinct completions (exact text)
are kept, in sample order. The output is JSONL with `id`, `problem`, `completion`,
`answer` and `kind`, written atomically, and `dashrl train --sft.data traces.jsonl` (or
`dashrl.data.sft.load_pairs`) reads it. The command prints how many problems are covered
(at least one kept) and the kept share of samples.

The teacher is a hub id, a local `save_pretrained` folder, a dashrl checkpoint folder, or
a dashrl run folder (its newest checkpoint). Every `--section.field VALUE` of
`dashrl train` applies (`--task.*`, `--sampler.*`, `--model.dtype`, `--train.seed`). Bad
input fails with one line before the model loads; an existing `--out` is never
overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dashrl.study.distill import DistillError, distill, resolve_teacher


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="hub id, local model folder, dashrl checkpoint or run folder")
    p.add_argument("--out", required=True, help="JSONL file to write (never overwritten)")
    p.add_argument("--n", type=int, default=8, help="samples per problem (default 8)")
    p.add_argument("--k", type=int, default=0, help="most completions kept per problem (default: n)")
    p.add_argument("--problems", type=int, default=0,
                   help="first N problems of the task (default: all; required for procedural tasks)")  # fmt: skip
    p.add_argument("--config", help="TOML run file whose task/sampler/model sections apply")
    p.epilog = (
        "Also takes --section.field VALUE like dashrl train: --task.name, --task.difficulty, "
        "--sampler.temperature, --sampler.max_new_tokens (default 48, the quickstart's: raise it for "
        "worked solutions, e.g. 256 for word problems, 1024 for MATH), --model.dtype, --train.seed."
    )


def _check_out(out: Path) -> None:
    if out.exists():
        raise DistillError(f"--out {out} already exists; distill never overwrites (pick another name or delete it)")
    from dashrl.runtime.io import writable_problem

    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise DistillError(f"--out {out}: the folder {parent} does not exist")
    problem = writable_problem(parent)  # before sampling, not after it
    if problem:
        raise DistillError(f"--out {out}: {problem}")


def run(args: argparse.Namespace) -> int:
    """Run `dashrl distill` with parsed `args`; one line on stderr and status 1 or 2 for bad input."""
    from dashrl.config import ConfigError, load_config
    from dashrl.data.datasets import DatasetError
    from dashrl.models import ModelError

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"dashrl: {e}", file=sys.stderr)
        return 2
    try:
        if args.n < 1:
            raise DistillError(f"--n must be >= 1, got {args.n}")
        if args.k < 0:
            raise DistillError(f"--k must be >= 1 (0 = n), got {args.k}")
        if args.problems < 0:
            raise DistillError(f"--problems must be >= 0, got {args.problems}")
        out = Path(args.out)
        _check_out(out)
        teacher = resolve_teacher(args.teacher)
        from dashrl.data.tasks import make_task

        try:
            task = make_task(cfg.task, cfg.train.seed)
        except (DatasetError, ValueError) as e:
            raise DistillError(f"--task.name {cfg.task.name}: {e}") from None
        problems = args.problems or task.size
        if problems is None:
            raise DistillError(f"task {cfg.task.name!r} is procedural (endless): give --problems N")
        if task.size is not None and problems > task.size:
            raise DistillError(f"--problems {problems} is more than the task's {task.size} problems")

        from dashrl.models import load_model
        from dashrl.rollout import make_sampler, sampling_params
        from dashrl.runtime.io import atomic_write_text

        model, tok = load_model(teacher, attn=cfg.model.attn)
    except DistillError as e:
        print(f"dashrl: {e}", file=sys.stderr)
        return 2
    except ModelError as e:
        print(f"dashrl: --teacher: {e}", file=sys.stderr)
        return 1
    sampler = make_sampler(cfg.sampler.backend, model=model, tokenizer=tok, dtype=cfg.model.dtype)
    params = sampling_params(cfg)
    start = time.monotonic()
    records, stats = distill(
        sampler, tok, task, problems=problems, n=args.n, k=args.k or args.n, params=params, seed=cfg.train.seed
    )
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in records))
    print(f"{stats.line()}; {time.monotonic() - start:.0f} s; wrote {out}")
    return 0
