"""`dashrl bench`: benchmarks that print a table, each comparing variants side by side in one run.

This module parses the flags and picks the mode; the work is `dashrl.bench`'s:

    dashrl bench [--workload gsm8k|wordproblems|arithmetic] [--quick]   # grpo against DASH (bench.steps)
    dashrl bench --sampling [--backends ...] [--batches 8,64]          # sampler backends (bench.sampling)
    dashrl bench --backprop [--levers ...]                              # backprop levers (bench.backprop)
    dashrl bench --algos                                                # sample selection (bench.algos)
    dashrl bench --select [--seeds 2] [--variants A,B]                  # filtering before sampling (bench.select)
    dashrl bench --workload quickstart [--before PATH]                  # whole runs' step split (bench.runs)
    dashrl bench --ttr [--level 0.5] [--trl-batches 8,16,32,64]         # time to reward against TRL (bench.runs)

Extra `--section.field VALUE` overrides apply to every variant. Ctrl-C ends any mode with one line
and exit status 130, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from dashrl.bench.steps import VARIANTS, variants_run
from dashrl.bench.workloads import QUICK, WORDS, WORKLOADS, workload_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    _run_arguments(p)
    _variant_arguments(p)
    _sampling_arguments(p)
    _backprop_arguments(p)
    p.epilog = "Extra --section.field VALUE overrides apply to every variant."


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """The workload, and the modes made of whole runs: the quickstart's split and time to reward."""
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
    p.add_argument(
        "--trl-batches",
        default="8,16,32,64",
        help="--ttr: TRL per-device train batch sizes to probe (accumulation keeping a step's samples per optimizer "
        "step), each timed over a few steps in a process of its own; the fastest runs the time to reward (one value "
        "and --trl-options none: no probe; default 8,16,32,64)",
    )
    p.add_argument(
        "--trl-options",
        default="continuous_batching,static_cache",
        help="--ttr: TRL generation options to probe at the fastest per-device batch, from continuous_batching "
        "(transformers' continuous batching engine), static_cache; 'none' for none (default: both)",
    )


def _variant_arguments(p: argparse.ArgumentParser) -> None:
    """The variant comparison's flags, and the config and output folder that every mode reads."""
    p.add_argument("--quick", action="store_true", help="small arithmetic workload for a smoke check (a few minutes)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per variant (default 3, quick 2)")
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated, from {sorted(VARIANTS)} (default: all; trl when installed); with --select, from "
        "dash, dapo_dynamic, dapo_greso, dash_greso (default: all four)",
    )
    p.add_argument(
        "--trl-gbs", type=int, default=None, help="TRL generation_batch_size (default: the fastest in a measured probe)"
    )
    p.add_argument("--config", default=None, help="TOML run file for the shared settings")
    p.add_argument(
        "--tuned",
        default=None,
        help="config written by `dashrl tune`: its batch sizes apply to the dash variants "
        "(with --ttr, to dashrl's side)",
    )
    p.add_argument("--out", default="bench", help="folder for bench.md, bench.json and bench.png")


def _sampling_arguments(p: argparse.ArgumentParser) -> None:
    """`--sampling`: the sampler backends alone (`--repeats` is `--backprop`'s too)."""
    p.add_argument(
        "--sampling",
        action="store_true",
        help="compare the sampler backends (hf, vllm) alone: tokens/s, start-up, sync, logprob gap",
    )
    p.add_argument(
        "--multiturn",
        action="store_true",
        help="sampled tokens/s of a multi-turn step (the config's [env]; default --config calculator) against a "
        "single-turn step of the same token count",
    )
    p.add_argument(
        "--batches", default="8,64", help="--sampling: sequences per generate call, G per prompt (default 8,64)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="--sampling / --backprop: timed calls per backend and batch size, or per lever; --ttr / --workload "
        "quickstart: runs per side (--ttr --repeats 0: TRL's probe alone)",
    )
    p.add_argument(
        "--backends",
        default=None,
        help="--sampling: comma-separated, from hf, hf_plain, hf_noshare, hf_noprepack, hf_compiled, vllm (default: "
        "all but hf_compiled)",
    )


def _backprop_arguments(p: argparse.ArgumentParser) -> None:
    """`--backprop` (the trainer's levers) and `--algos` (sample selection)."""
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
        "--select",
        action="store_true",
        help="compare filtering before sampling (GRESO) with DASH's filter and DAPO's dynamic sampling on a pool of "
        "trivial, learnable and impossible prompts revisited over epochs (dashrl.bench.select; --level is the reward "
        "on the learnable part, --seeds the repeats)",
    )
    p.add_argument("--seeds", type=int, default=1, help="--select: training seeds, each a full set of arms (default 1)")
    p.add_argument(
        "--levers",
        default=None,
        help="--backprop: comma-separated, from padded, head_chunk, packed, packed_chunk, plain, cast_each, one_pass "
        "(default: all)",
    )


def run(args: argparse.Namespace) -> int:
    """`dashrl bench` in any mode; Ctrl-C ends it with one line and status 130, never a
    traceback (each mode first writes what it finished: the steps every variant took
    (`dashrl.bench.interleave`), the repeats every backend or lever finished)."""
    workload = workload_flags(getattr(args, "workload", "gsm8k"), args.quick)
    try:
        if getattr(args, "multiturn", False):
            from dashrl.bench.multiturn import multiturn_run

            return multiturn_run(args)
        if args.sampling:
            from dashrl.bench.sampling import sampling_run

            return sampling_run(args, workload)
        if args.ttr or (getattr(args, "workload", None) == "quickstart" and not args.backprop):
            from dashrl.bench.runs import quickstart_run, ttr_run

            if args.repeats < (0 if args.ttr else 1) or (args.ttr and args.window < 1):
                print("dashrl bench: --repeats and --window: expected at least 1 (--ttr --repeats 0: the probe alone)",
                      file=sys.stderr)  # fmt: skip
                return 2
            return ttr_run(args) if args.ttr else quickstart_run(args)
        if args.backprop:
            from dashrl.bench.backprop import backprop_run

            return backprop_run(args, workload)
        if getattr(args, "select", False):
            from dashrl.bench.select import select_run

            return select_run(args)
        if getattr(args, "algos", False):
            from dashrl.bench.algos import algos_run

            return algos_run(args, QUICK if args.quick else WORDS)
        return variants_run(args, workload)
    except KeyboardInterrupt:
        print("dashrl bench: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        from dashrl.bench.runs import ArmFailed  # a run in a process of its own failed

        if not isinstance(e, ArmFailed):
            raise
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 1
