"""`dashrl eval`: sample from a model on named datasets or files, grade, print a table, write JSON.

    dashrl eval --model smollm2-135m --dataset math500 --dataset gsm8k --n 8 --k 1,4,8 \\
        --temperature 0.6 --max-new-tokens 1024 --out report.json

With `--n 1` (the default) decoding is greedy unless `--temperature` is given; with `--n > 1` the
default temperature is 1.0. The JSON report holds the settings and, per dataset, the metrics of
`dashrl.eval.evaluate` (and per-example records with `--records`). It is written atomically
(temp file in the same folder, then rename). Nothing heavy is imported until `run` is called.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k expects comma-separated integers like 1,4,8, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"--k values must be >= 1, got {text!r}")
    return ks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `dashrl eval` options to `parser`.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--model", "m", "--dataset", "gsm8k", "--k", "1,4"]).k
    [1, 4]
    """
    parser.add_argument("--model", required=True, help="hub id, local folder or a dashrl model alias")
    parser.add_argument("--dataset", action="append", required=True,
                        help="named dataset (math500, gsm8k, mbppplus, ...), .jsonl(.gz) path or hf:owner/name; repeatable")  # fmt: skip
    parser.add_argument("--split", default=None, help="split of every --dataset (default: each dataset's own)")
    parser.add_argument("--n", type=int, default=1, help="samples per problem")
    parser.add_argument("--k", type=_ks, default=None, help="pass@k values, e.g. 1,4,8 (default: 1 and n)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature; 0 = greedy (default: 0 if n == 1 else 1.0)")  # fmt: skip
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64, help="sequences decoded together")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--problem-field", default=None, help="problem field of a .jsonl dataset")
    parser.add_argument("--answer-field", default=None, help="answer field of a .jsonl dataset")
    parser.add_argument("--tests-field", default=None, help="tests field of a .jsonl code dataset")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per program for code datasets")
    parser.add_argument("--records", action="store_true", help="store per-example completions in the report")
    parser.add_argument("--out", default=None, help="write the JSON report here")


def write_json_atomic(path: str, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (`dashrl.train.checkpoint.atomic_write_text`).

    >>> import os, tempfile; write_json_atomic(os.path.join(tempfile.mkdtemp(), "r.json"), {"a": 1})
    """
    from dashrl.train.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2))


def run(args: argparse.Namespace) -> int:
    """Run `dashrl eval` with parsed `args`; returns the process exit code.

    >>> run(parser.parse_args(["--model", "smollm2-135m", "--dataset", "gsm8k", "--limit", "4"]))  # doctest: +SKIP
    0
    """
    from dashrl.data.datasets import DatasetError, load_dataset

    if args.n < 1:
        print(f"error: --n must be >= 1, got {args.n}", file=sys.stderr)
        return 2
    ks = args.k or sorted({1, args.n})
    if max(ks) > args.n:
        print(f"error: --k {max(ks)} is larger than --n {args.n}", file=sys.stderr)
        return 2
    temperature = args.temperature if args.temperature is not None else (0.0 if args.n == 1 else 1.0)
    try:
        datasets = {
            name: load_dataset(name, args.split, problem_field=args.problem_field,
                               answer_field=args.answer_field, tests_field=args.tests_field, limit=args.limit)
            for name in args.dataset
        }  # fmt: skip
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from dashrl.eval import evaluate, format_table
    from dashrl.models import load_model
    from dashrl.rollout import SamplingParams, make_sampler

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    sampler = make_sampler("hf", model=model, tokenizer=tokenizer, dtype=args.dtype)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=temperature,
                            top_p=args.top_p, batch_size=args.batch_size)  # fmt: skip
    results: dict[str, Any] = {}
    for name, examples in datasets.items():
        start = time.monotonic()
        results[name] = evaluate(sampler, tokenizer, examples, params=params, n=args.n, ks=ks,
                                 seed=args.seed, records=args.records, timeout=args.timeout)  # fmt: skip
        results[name]["seconds"] = round(time.monotonic() - start, 2)
    print(format_table(results))
    if args.out:
        settings = {key: value for key, value in vars(args).items() if not callable(value)}
        settings.update(k=ks, temperature=temperature)
        write_json_atomic(args.out, {"settings": settings, "results": results})
        print(f"wrote {args.out}")
    return 0
