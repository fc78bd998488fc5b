"""`dashrl` command line: parses the config first, imports heavy modules lazily.

One module per command in this package, each with `add_arguments(parser)` and `run(args) -> int`:
it parses the command's flags and calls into the library (`bench` and `tune` into `dashrl.bench`,
`study` and `distill` into `dashrl.study`). `COMMANDS` below is the whole list.

    dashrl train [--config FILE.toml] [--section.field VALUE ...]
    dashrl train --resume RUN_DIR [--train.steps N]
    dashrl eval --model PATH_OR_ID_OR_RUN_DIR --dataset math500 [...]
    dashrl report RUN_DIR [RUN_DIR ...] [--out DIR]
    dashrl bench [--quick | --sampling | --backprop | --algos | --ttr | --workload NAME] [...]
    dashrl tune [--batch-sizes 8,16,...] [--micro-batches ...] [--out tuned.toml]
    dashrl config [--show SECTION] [--files]
    dashrl distill --teacher MODEL --task.name NAME --n 8 --out traces.jsonl
    dashrl study [--preset cpu|paper] [--out DIR] [--seeds N] [--quick] [--section.field VALUE ...]

`dashrl train` with no arguments runs the quickstart: DASH on SmolLM2-135M-Instruct
on the arithmetic task (the shipped run file `quickstart` holds the same values).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# name -> (module, help): each module has add_arguments(parser) and run(args) -> int
COMMANDS = {
    "train": ("dashrl.cli.train", "train a policy with DASH, GRPO or PPO schedules"),
    "eval": ("dashrl.cli.eval", "evaluate a model on math and code datasets"),
    "report": ("dashrl.cli.report", "plot one or more runs and write a markdown summary"),
    "bench": ("dashrl.cli.bench", "time grpo, DASH without and with filtering side by side"),
    "tune": ("dashrl.cli.tune", "measure and pick the inference batch size and micro-batch size"),
    "config": ("dashrl.cli.config", "list every config field (type, default, doc) and the shipped run files"),
    "distill": ("dashrl.cli.distill", "keep a teacher model's correct solutions to a task as SFT data"),
    "study": ("dashrl.cli.study", "run the paper's arms, evaluate them alike, and judge its five findings"),
}
TAKES_OVERRIDES = ("train", "eval", "bench", "tune", "distill", "study")  # commands that accept --section.field VALUE
RUNS_TORCH = (
    "train",
    "eval",
    "bench",
    "tune",
    "distill",
    "study",
)  # their OpenMP settings are chosen first (dashrl.runtime.openmp)


def build_parser() -> argparse.ArgumentParser:
    from dashrl import __version__

    parser = argparse.ArgumentParser(prog="dashrl", description="Fast RL for reasoning language models (DASH).")
    parser.add_argument("--version", action="version", version=f"dashrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError:  # a command whose module is not installed
            p.set_defaults(_missing=module)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if getattr(args, "_missing", None):
        print(f"dashrl: the {args.command} command is not available ({args._missing} is missing)", file=sys.stderr)
        return 2
    if rest and args.command not in TAKES_OVERRIDES:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.overrides = rest
    if args.command in RUNS_TORCH:
        from dashrl.runtime import openmp

        openmp.apply()  # before any command imports torch (libgomp reads its settings once)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except BrokenPipeError:  # `dashrl config | head`: the reader has gone; no traceback for that
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail too
        return 141  # 128 + SIGPIPE, as a shell reports a command whose reader left
