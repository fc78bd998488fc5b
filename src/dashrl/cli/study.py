"""`dashrl study`: the paper's comparison, every arm on one model, task, prompt stream and seed.

    dashrl study                                  # the cpu preset into ./study
    dashrl study --quick --out smoke              # every arm in minutes (a smoke run)
    dashrl study --preset paper --seeds 3         # the authors' settings, on a GPU
    dashrl study --model.name runs/m --task.difficulty 2   # study-wide overrides

Order: the training arms of each seed (`dashrl.study.arms.ARMS`, each an ordinary run
folder under `DIR/runs/`, trained in this process by `dashrl.train.loop.train`), SFT-M's
traces distilled from the finished DASH arm (or `--teacher`), the PPO arms' checkpoint at
DASH's wall-clock, then one evaluator over the base model and every final checkpoint
(`dashrl.study.measure`), then `DIR/report.md` and its figures. Rerunning the command
skips finished arms, continues an interrupted one from its newest checkpoint, and reuses
the cached evaluations: Ctrl-C, SIGTERM or a kill lose at most the step in progress.

Departures from the paper: the cpu preset is a 135M model on procedural word problems
(the paper: Qwen2.5 0.5B-3B on MATH); accuracy is greedy accuracy; the PPO arms are read at
DASH's *training* time (evaluation, saving and start-up excluded, the same rule for every
arm); offline, SFT-M's teacher is the DASH arm itself (the only stronger model at hand).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

RL_ORDER = ("dash", "dash_nokl", "nogf", "grpo", "ppo_multi", "ppo_mini")  # then the opt-in arms (`rl_order`)


def rl_order() -> list[str]:
    """The RL arms in running order: the paper's, then the registry's other algorithms."""
    from dashrl.study.arms import ARMS

    return [*RL_ORDER, *(a for a, arm in ARMS.items() if not arm.default and arm.kind == "rl")]


PPO = ("ppo_multi", "ppo_mini")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dashrl.study.presets import PRESETS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--preset", default="cpu", choices=list(PRESETS), help="what every arm shares (default cpu)")
    p.add_argument(
        "--out", default="study", metavar="DIR", help="study folder: runs/, eval/, report.md (default ./study)"
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per arm (3 or more: intervals over seeds)")
    p.add_argument("--quick", action="store_true", help="a smoke run of every arm in minutes (tiny sizes)")
    p.add_argument("--teacher", metavar="MODEL", help="SFT-M's teacher (default: the finished DASH arm's checkpoint)")
    p.add_argument("--arms", metavar="A,B", help="run only these arms (the report marks the others not run)")
    p.epilog = (
        "Presets:\n"
        + "\n".join(f"  {n:6} {pr.summary}" for n, pr in PRESETS.items())
        + (
            "\n\nArms: base, dash (the paper's DASH, with KL), dash_nokl (No-KL), nogf (No-GF), grpo,\n"
            "ppo_multi (K = 3), ppo_mini, sft_h, sft_m. Any --section.field VALUE of dashrl train\n"
            "applies to every arm (not the fields that define the arms, nor run.*)."
        )
    )


def _say(msg: str) -> None:
    print(f"[dashrl] study: {msg}", file=sys.stderr, flush=True)


def with_eval_overrides(preset: Any, flags: dict[str, str]) -> Any:
    """`--eval.limit N` / `--eval.max_new_tokens N` set the study evaluator's problems per set
    and completion cap; they do not enter the arms' configs, so changing them re-evaluates
    the finished arms without retraining them."""
    from dataclasses import replace

    from dashrl.config import ConfigError

    fields = {"limit": "eval_limit", "max_new_tokens": "eval_max_new_tokens"}
    try:
        given = {fields[k]: int(v) for k, v in flags.items() if k in fields}
    except ValueError:
        raise ConfigError(f"--eval.limit / --eval.max_new_tokens expect integers, got {flags}") from None
    return replace(preset, **given)


class Plan:
    """What one `dashrl study` invocation runs: preset, folders, seeds, arms, overrides."""

    def __init__(self, args: argparse.Namespace):
        from dashrl.config import parse_overrides
        from dashrl.study.arms import ARMS, check_overrides
        from dashrl.study.presets import get_preset

        self.overrides: dict[str, dict[str, Any]] = parse_overrides(args.overrides or [])
        check_overrides(self.overrides)
        evaluator = {
            k: self.overrides["eval"].pop(k) for k in ("limit", "max_new_tokens") if k in self.overrides.get("eval", {})
        }
        self.preset = with_eval_overrides(
            get_preset(args.preset, args.quick), evaluator
        )  # the study's evaluator, not the arms
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        self.seeds = list(range(args.seeds))
        wanted = [a.strip() for a in (args.arms or "").split(",") if a.strip()] or [
            a for a, arm in ARMS.items() if arm.default
        ]
        unknown = [a for a in wanted if a not in ARMS]
        if unknown:
            raise ValueError(f"--arms: unknown arm {unknown[0]!r}; valid: {', '.join(ARMS)}")
        self.arms = wanted
        self.out = Path(args.out)
        self.runs, self.evals, self.traces = self.out / "runs", self.out / "eval", self.out / "traces"
        self.teacher = args.teacher
        self.sft_data: dict[tuple[str, int], str] = {}  # (arm, seed) -> the --sft.data it trained on
        flags = [f"--preset {args.preset}", f"--out {args.out}", f"--seeds {args.seeds}"]
        flags += (
            ["--quick"] * bool(args.quick)
            + [f"--teacher {args.teacher}"] * bool(args.teacher)
            + [f"--arms {args.arms}"] * bool(args.arms)
        )
        self.command = " ".join(["dashrl study", *flags, *(args.overrides or [])])

    def config(self, arm: str, seed: int, sft_data: str = "human") -> Any:
        from dashrl.study.arms import ARMS, arm_config

        return arm_config(ARMS[arm], self.preset, self.overrides, self.runs, seed, sft_data)

    def trace_file(self, seed: int, teacher: str) -> Path:
        """SFT-M's traces of `seed` from `teacher` (named by both: another teacher, another file)."""
        import hashlib

        return self.traces / f"sft_m-s{seed}-{hashlib.sha256(teacher.encode()).hexdigest()[:8]}.jsonl"


def _train(cfg: Any) -> None:
    from dashrl.train.loop import train

    result = train(cfg)
    del result
    gc.collect()


def _run_arm(plan: Plan, arm: str, seed: int, sft_data: str = "human") -> str:
    """Train one arm unless it is finished; returns how it went ("done", "trained", "resumed")."""
    from dashrl.study.arms import run_name, status

    cfg = plan.config(arm, seed, sft_data)
    state = status(cfg)
    if state == "done":
        _say(f"{run_name(arm, seed)}: finished, skipped")
        return "done"
    _say(
        f"{run_name(arm, seed)}: {'resuming' if state == 'partial' else 'training'} "
        f"{cfg.algo.name}, {cfg.train.steps} steps"
    )
    _train(cfg)
    return "resumed" if state == "partial" else "trained"


def _teacher(plan: Plan, seed: int) -> str | None:
    from dashrl.study.distill import resolve_teacher
    from dashrl.study.arms import TEACHER_ARM, final_checkpoint, run_name

    if plan.teacher:
        return resolve_teacher(plan.teacher)
    ckpt = final_checkpoint(plan.runs / run_name(TEACHER_ARM, seed))
    return str(ckpt) if ckpt else None


def train_arms(plan: Plan) -> dict[tuple[str, int], str]:
    """Run every arm of every seed; returns {(arm, seed): why it did not run} for the ones that could not."""
    from dashrl.config import ConfigError
    from dashrl.study.measure import distill_traces

    from dashrl.rewards import math_reward

    math_reward(
        "\\boxed{\\frac{1}{2}}", "0.5"
    )  # a symbolic check: math-verify and sympy load before the first arm's clock
    skipped: dict[tuple[str, int], str] = {}
    for seed in plan.seeds:
        for arm in rl_order():
            if arm in plan.arms:
                _run_arm(plan, arm, seed)
        for arm in ("sft_h", "sft_m"):
            if arm not in plan.arms:
                continue
            try:
                plan.config(arm, seed)  # does this dashrl have the sft schedule?
            except ConfigError as e:
                skipped[(arm, seed)] = f"this dashrl cannot run it ({str(e).split(';')[0]})"
                continue
            data = "human"
            if arm == "sft_m":
                teacher = _teacher(plan, seed)
                if teacher is None:
                    skipped[(arm, seed)] = "no teacher: the DASH arm has not finished (or pass --teacher)"
                    continue
                stats = distill_traces(teacher, plan.config("dash", seed), plan.preset, plan.trace_file(seed, teacher))
                if not stats["file"]:
                    skipped[(arm, seed)] = f"the teacher solved none of {stats['samples']} samples"
                    continue
                data = stats["file"]
            plan.sft_data[(arm, seed)] = data
            _run_arm(plan, arm, seed, data)
    return skipped


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    from dashrl.cli.report import ReportError, load_run

    try:
        return load_run(run_dir).rows
    except ReportError:
        return []


def cut_ppo(plan: Plan, arm: str, seed: int) -> int | None:
    """The PPO arm's optimizer step at DASH's training time; keeps only that checkpoint and the final one."""
    from dashrl.study.arms import keep_only, run_name, status
    from dashrl.study.findings import cut_step, step_seconds
    from dashrl.train.checkpoint import step_dir

    dash_cfg, cfg = plan.config("dash", seed), plan.config(arm, seed)
    if status(dash_cfg) != "done" or status(cfg) != "done":
        return None
    budget = sum(step_seconds(read_rows(plan.runs / run_name("dash", seed))))
    run_dir = plan.runs / run_name(arm, seed)
    step = cut_step(read_rows(run_dir), budget, cfg.algo.ppo_k)
    if step is None or not step_dir(run_dir, step).is_dir():
        return None
    keep_only(run_dir, {step_dir(run_dir, step)})
    return step


def collect(plan: Plan, skipped: dict[tuple[str, int], str]) -> dict[str, Any]:
    """Evaluate every finished model once (cached) and gather each arm's results."""
    from dashrl.study.arms import ARMS, final_checkpoint, run_name, status
    from dashrl.study.findings import ArmResult
    from dashrl.study.measure import cached_eval
    from dashrl.train.checkpoint import step_dir

    base_cfg = plan.config("base", 0)
    kw = {"dtype": base_cfg.model.dtype, "difficulty": base_cfg.task.difficulty}
    results: dict[str, ArmResult] = {}
    for name, arm in ARMS.items():
        res = ArmResult(name, arm.label)
        results[name] = res
        if name not in plan.arms:
            if not arm.default:  # an opt-in arm nobody asked for: not in the report at all
                del results[name]
                continue
            res.ran, res.why = False, "not among --arms"
            continue
        if name == "base":
            res.evals = [cached_eval(plan.evals, "base", base_cfg.model.name, plan.preset, **kw)]
            continue
        for seed in plan.seeds:
            if (name, seed) in skipped:
                res.ran, res.why = False, skipped[(name, seed)]
                break
            cfg = plan.config(name, seed, plan.sft_data.get((name, seed), "human"))
            run_dir = plan.runs / run_name(name, seed)
            if status(cfg) != "done":
                res.ran, res.why = False, "not finished"
                break
            res.rows.append(read_rows(run_dir))
            res.evals.append(
                cached_eval(plan.evals, run_name(name, seed), str(final_checkpoint(run_dir)), plan.preset, **kw)
            )
            if name in PPO:
                step = cut_ppo(plan, name, seed)
                res.cut_steps.append(step)
                if step is not None:
                    ckpt = step_dir(run_dir, step)
                    same = ckpt == final_checkpoint(run_dir)  # it finished within DASH's time: its final reading
                    key = f"{run_name(name, seed)}-at-dash-time"
                    res.cut_evals.append(
                        res.evals[-1] if same else cached_eval(plan.evals, key, str(ckpt), plan.preset, **kw)
                    )
        if not res.ran:
            res.evals, res.rows, res.cut_evals = [], [], []
        elif name in PPO and len(res.cut_evals) != len(plan.seeds):
            res.cut_evals = []  # a seed without a checkpoint within DASH's time: no paired reading
    return results


def run(args: argparse.Namespace) -> int:
    """Run `dashrl study`; one line on stderr and status 2 (bad flags) or 1 (a run or model failed)."""
    from dashrl.cli.train import fail
    from dashrl.config import ConfigError
    from dashrl.data.datasets import DatasetError
    from dashrl.models import ModelError
    from dashrl.train.loop import Interrupted, RunError
    from dashrl.train.preflight import writable_problem

    try:
        plan = Plan(args)
        for seed in plan.seeds:  # every RL arm's config, before anything heavy
            for arm in rl_order():
                if arm in plan.arms:
                    plan.config(arm, seed)
    except (ConfigError, ValueError, KeyError) as e:
        return fail(str(e).strip("'\""), 2)
    problem = writable_problem(plan.out)
    if problem:
        return fail(f"--out {plan.out}: {problem}", 1)
    _say(f"preset {plan.preset.name}{' (quick)' if args.quick else ''}, {len(plan.seeds)} seed(s), folder {plan.out}")
    try:
        skipped = train_arms(plan)
        results = collect(plan, skipped)
        from dashrl.study.report import write_report

        path = write_report(plan, results, skipped)
    except Interrupted as e:
        print(f"[dashrl] {e}", file=sys.stderr)
        _say("interrupted; run the same dashrl study command again to continue where it stopped")
        return 128 + int(e.signum)
    except (ModelError, DatasetError, RunError) as e:
        return fail(str(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted; run the same dashrl study command again to continue", 130)
    print(f"wrote {path}")
    return 0
