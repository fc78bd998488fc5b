"""`dashrl eval`: sample from a model on named datasets or files, grade, print a table, write JSON.

    dashrl eval --model.name runs/qs/checkpoints/step-30 --dataset arithmetic   # as training evaluates
    dashrl eval --model runs/qs --dataset arithmetic          # a run folder: its newest checkpoint (or --step N)
    dashrl eval --model.name smollm2-135m --dataset math500 --dataset gsm8k --n 8 --k 1,4,8 \\
        --sampler.temperature 0.6 --eval.max_new_tokens 1024 --out report.json

It takes train's `--section.field VALUE` flags where they apply, with train's validation and
one-line errors: `model.*` (name, dtype, attn), `sampler.temperature / top_p / top_k / backend`,
`task.difficulty` (of `arithmetic`) and `task.problem_field / answer_field / tests_field` (of a
local JSONL), and `eval.*` (datasets, limit, max_new_tokens, batch_size); `--config` reads a run
file or a run's `config.toml`. Short flags (`--model`, `--limit`, `--temperature`, ...) are
aliases. `--dataset arithmetic` is the held-out arithmetic set that `--eval.datasets arithmetic`
evaluates inside training (`dashrl.train.evaluation.load_eval_sets`), graded the same way.

Defaults differ from a training run's in two places: `eval.limit` is 0 (every problem; 100 for
`arithmetic`), and decoding is greedy with `--n 1` (as in training's evaluation) unless a
temperature is given on the command line; with `--n > 1` the default temperature is 1.0.
The output file is checked before anything loads, and written atomically (temp file in the
same folder, then rename). Nothing heavy is imported until `run` is called.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

# short flag -> config key (train's --section.field spelling works as well)
ALIASES = {
    "model": "model.name",
    "dtype": "model.dtype",
    "temperature": "sampler.temperature",
    "top_p": "sampler.top_p",
    "max_new_tokens": "eval.max_new_tokens",
    "batch_size": "eval.batch_size",
    "limit": "eval.limit",
    "difficulty": "task.difficulty",
    "problem_field": "task.problem_field",
    "answer_field": "task.answer_field",
    "tests_field": "task.tests_field",
}
APPLIES = ("model", "sampler", "task", "eval", "env")  # the config sections an evaluation reads
# fields of those sections that evaluation does not read, and what to use instead
NOT_HERE = {
    "task.name": "--dataset",
    "task.split": "--split",
    "task.limit": "--eval.limit",
    "sampler.max_new_tokens": "--eval.max_new_tokens",
    "sampler.batch_size": "--eval.batch_size",
    "eval.every": None,
}


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
    parser.add_argument(
        "--config",
        metavar="FILE_OR_NAME",
        help="a run file or a run's config.toml (its model, sampler, task and eval sections)",
    )
    parser.add_argument("--dataset", action="append", default=None,
                        help="arithmetic, a named dataset (math500, gsm8k, mbppplus, ...), a .jsonl(.gz) path or "
                             "hf:owner/name; repeatable (or --eval.datasets a,b)")  # fmt: skip
    parser.add_argument("--split", default=None, help="split of every --dataset (default: each dataset's own)")
    parser.add_argument("--n", type=int, default=1, help="samples per problem")
    parser.add_argument("--k", type=_ks, default=None, help="pass@k values, e.g. 1,4,8 (default: 1 and n)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per program for code datasets")
    parser.add_argument("--records", action="store_true", help="store per-example completions in the report")
    parser.add_argument("--out", default=None, help="write the JSON report here (checked before anything loads)")
    parser.add_argument(
        "--step", type=int, default=None, help="with --model RUN_DIR: its checkpoint of step N (default: the newest)"
    )
    aliases = parser.add_argument_group("short aliases of config flags")
    for flag, key in ALIASES.items():
        aliases.add_argument(
            f"--{flag.replace('_', '-')}", dest=f"alias_{flag}", default=None, metavar="VALUE", help=f"= --{key}"
        )
    parser.epilog = (
        "Config flags as in `dashrl train`: --model.*, --sampler.temperature/top_p/top_k/backend, "
        "--task.difficulty/problem_field/answer_field/tests_field, --eval.*; see `dashrl config --show SECTION`."
    )


def eval_config(args: argparse.Namespace) -> Any:
    """The validated Config an evaluation reads: eval defaults <- --config <- aliases and
    `--section.field` flags. Raises ConfigError for a flag that does not apply."""
    from dashrl.config import ConfigError, load_config, parse_overrides

    flags: list[str] = []
    for flag, key in ALIASES.items():
        value = getattr(args, f"alias_{flag}", None)
        if value is not None:
            flags += [f"--{key}", value]
    flags += list(getattr(args, "overrides", None) or [])
    for sec, vals in parse_overrides(flags).items():
        for key in vals:
            name = f"{sec}.{key}"
            if sec not in APPLIES:
                raise ConfigError(f"--{name} does not apply to dashrl eval (it reads --{'.*, --'.join(APPLIES)}.*)")
            if name in NOT_HERE:
                instead = f"; use {NOT_HERE[name]}" if NOT_HERE[name] else ""
                raise ConfigError(f"--{name} does not apply to dashrl eval{instead}")
    # task.name is train's: evaluation reads --dataset, and the field flags apply to its files
    return load_config(args.config, [*flags, "--task.name", ""], base={"eval": {"limit": 0}})


def model_path(name: str, step: int | None) -> str:
    """What `load_model` gets for `--model.name`: a run folder (`checkpoints/` or `config.toml`,
    and no `config.json`) becomes its checkpoint of `step`, or its newest one; anything else is kept.
    Raises ValueError, whose message names the folder and the steps it has.

    >>> model_path("smollm2-135m", None)
    'smollm2-135m'
    """
    run_dir = Path(name).expanduser()
    is_run = (run_dir / "checkpoints").is_dir() or (run_dir / "config.toml").is_file()
    if not is_run or (run_dir / "config.json").is_file():
        if step is not None:
            raise ValueError(f"--step picks a checkpoint of a run folder, and --model {name} is not one")
        return name
    from dashrl.train.checkpoint import list_checkpoints, step_dir

    found = list_checkpoints(run_dir)
    if not found:
        raise ValueError(f"run folder {run_dir} has no checkpoint yet")
    if step is None:
        return str(found[-1])
    if step_dir(run_dir, step) not in found:
        steps = ", ".join(str(int(p.name.removeprefix("step-"))) for p in found)
        raise ValueError(f"run folder {run_dir} has no checkpoint of step {step}; it has steps {steps}")
    return str(step_dir(run_dir, step))


def check_output(path: str) -> str | None:
    """Why the report cannot be written to `path`, or None (nothing is created)."""
    from dashrl.runtime.io import writable_problem

    target = Path(path)
    if target.is_dir():
        return f"{target} is a folder; give a file name such as {target / 'report.json'}"
    problem = writable_problem(target.parent)
    return f"cannot write {target}: {problem}" if problem else None


def write_json_atomic(path: str, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (`dashrl.runtime.io.atomic_write_text`).

    >>> import os, tempfile; write_json_atomic(os.path.join(tempfile.mkdtemp(), "r.json"), {"a": 1})
    """
    from dashrl.runtime.io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2))


def flag_problem(args: argparse.Namespace, ks: list[int], names: list[str]) -> str | None:
    """What is wrong with `--n`, `--k` and the datasets named, or None.

    >>> flag_problem(argparse.Namespace(n=4), [1, 8], ["gsm8k"])
    '--k 8 is larger than --n 4'
    """
    if args.n < 1:
        return f"--n must be >= 1, got {args.n}"
    if max(ks) > args.n:
        return f"--k {max(ks)} is larger than --n {args.n}"
    if not names:
        return "name at least one dataset: --dataset NAME (repeatable) or --eval.datasets a,b"
    return None


def eval_temperature(args: argparse.Namespace, cfg: Any) -> float:
    """The sampling temperature: the config's when one is given on the command line, else greedy
    for `--n 1` (as training's evaluation) and 1.0 for more samples per problem."""
    given = {flag for flag in (getattr(args, "overrides", None) or []) if flag.startswith("--sampler.temperature")}
    if given or args.alias_temperature is not None:
        return cfg.sampler.temperature
    return 0.0 if args.n == 1 else 1.0


def run(args: argparse.Namespace) -> int:
    """Run `dashrl eval` with parsed `args`; returns the process exit code (2: bad flags or
    config, 1: a model, dataset or file problem), after one `dashrl: ...` line on stderr.

    >>> run(parser.parse_args(["--model", "smollm2-135m", "--dataset", "gsm8k", "--limit", "4"]))  # doctest: +SKIP
    0
    """
    from dashrl.cli.train import fail
    from dashrl.config import ConfigError
    from dashrl.data.datasets import DatasetError

    try:
        cfg = eval_config(args)
    except ConfigError as err:
        return fail(str(err), 2)
    ks = args.k or sorted({1, args.n})
    names = args.dataset or cfg.eval.dataset_names
    problem = flag_problem(args, ks, names)
    if problem:
        return fail(problem, 2)
    problem = check_output(args.out) if args.out else None
    if problem:
        return fail(problem, 1)
    try:
        model = model_path(cfg.model.name, args.step)
    except ValueError as err:
        return fail(str(err), 1)
    if model != cfg.model.name:
        print(f"[dashrl] evaluating {model}", file=sys.stderr)
    temperature = eval_temperature(args, cfg)
    try:
        datasets = load_datasets(cfg, names, args.split)
    except DatasetError as err:
        return fail(str(err), 1)

    try:
        env = eval_env(cfg)
    except ValueError as err:  # an environment or tool that cannot be used: one line, before the model loads
        return fail(str(err), 2)

    from dashrl.models import ModelError, load_model
    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()  # no loading bars in the table's way (or in a log file)
    try:
        policy, tokenizer = load_model(model, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    except ModelError as err:
        return fail(str(err), 1)
    from dashrl.eval import format_table

    results, params = evaluate_sets(cfg, policy, tokenizer, datasets, args, ks, temperature, env)
    print(format_table(results))
    if args.out:
        settings = eval_settings(cfg, model, names, args, ks, params)
        try:
            write_json_atomic(args.out, {"settings": settings, "results": results})
        except OSError as err:
            return fail(f"cannot write {args.out}: {err.strerror or err} (the table above holds the results)", 1)
        print(f"wrote {args.out}")
    return 0


def load_datasets(cfg: Any, names: list[str], split: str | None) -> dict[str, list]:
    """The named evaluation sets, loaded as training's evaluation loads them (a local file's field
    names from `task.*`); raises DatasetError."""
    from dashrl.train.evaluation import load_eval_sets

    task = cfg.task
    fields = {
        "problem_field": task.problem_field or None,
        "answer_field": task.answer_field or None,
        "tests_field": task.tests_field or None,
    }
    return load_eval_sets(names, cfg.eval.limit, task.difficulty, split, **fields)


def evaluate_sets(
    cfg: Any, policy: Any, tokenizer: Any, datasets: dict[str, list], args: argparse.Namespace, ks: list[int],
    temperature: float, env: Any = None,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Sample and grade every dataset with one sampler (multi-turn with `env`, `[env]`'s): each one's
    results (with its seconds) and the sampling parameters used."""
    from dashrl.eval import evaluate
    from dashrl.rollout import make_sampler, sampling_params

    sampler = make_sampler(cfg.sampler.backend, model=policy, tokenizer=tokenizer, dtype=cfg.model.dtype)
    params = sampling_params(cfg, max_new_tokens=cfg.eval.max_new_tokens, temperature=temperature,
                             batch_size=cfg.eval.batch_size)  # fmt: skip
    limits = None
    if env is not None:
        from dashrl.env.rollout import env_limits

        limits = env_limits(cfg)
    results: dict[str, Any] = {}
    for name, examples in datasets.items():
        start = time.monotonic()
        results[name] = evaluate(sampler, tokenizer, examples, params=params, n=args.n, ks=ks, seed=args.seed,
                                 records=args.records, timeout=args.timeout, env=env, limits=limits)  # fmt: skip
        results[name]["seconds"] = round(time.monotonic() - start, 2)
    return results, params


def eval_env(cfg: Any) -> Any:
    """`[env]`'s environment for a multi-turn evaluation (None: single-turn), checked; a ValueError
    (`dashrl.env.tools.EnvError`) names what is wrong."""
    if not cfg.env.enabled:
        return None
    from dashrl.env.loading import env_spec

    return env_spec(cfg.env)


def eval_settings(
    cfg: Any, model: str, names: list[str], args: argparse.Namespace, ks: list[int], params: Any
) -> dict[str, Any]:
    """The settings the JSON report records beside the results: what was evaluated, and how."""
    return {"model": {**vars(cfg.model), "checkpoint": model}, "difficulty": cfg.task.difficulty,
            "datasets": names, "split": args.split,
            "n": args.n, "k": ks, "seed": args.seed, "temperature": params.temperature, "top_p": params.top_p,
            "top_k": params.top_k, "max_new_tokens": params.max_new_tokens, "batch_size": params.batch_size,
            "limit": cfg.eval.limit, "timeout": args.timeout}  # fmt: skip
