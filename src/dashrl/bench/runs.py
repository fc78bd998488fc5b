"""Benchmarks made of whole runs, each `dashrl train` (or TRL) in a process of its own.

`dashrl bench --workload quickstart`: the quickstart's step split, step 1 apart from steps 2..N,
and the MFU of sampling and backprop, for "arms" run in turn: `after` (this checkout) and,
with `--before PATH`, another checkout (a `git worktree` of main, say), run with `PATH/src` on
`PYTHONPATH`. Each arm runs `--repeats` times, the order rotating, so machine noise hits both
alike; the table gives each arm's median repeat by the later step's time, whole. Step 1 is
measured as a user meets it: in a fresh process, after the start-up that the run itself logs
(`time/startup_s`, empty where the arm does not log it).

`dashrl bench --ttr`: time to reward. dashrl (`dashrl train`) and TRL's GRPOTrainer
(`dashrl.peers.trl_task`) on the same task, model and settings (8 prompts x 8 samples, at most
48 new tokens, beta 0, the same learning rate), one process each, in turn. For each: the
seconds of training until the rolling mean of the training reward over `--window` steps first
reaches `--level` (each run then ends; `--steps` is the cap), and the ratio. Both clocks run from
the model loaded to the step's end: model loading is left out on both sides, first calls counted
on both (`training_clock`). Each side's repeats give a median and a range. The default task is
the quickstart's arithmetic, rewarded by the built-in `integer` function so that TRL runs the very
same reward; `--task.name FILE --reward.funcs FILE.py:fn,...` runs a TRL user's own task instead
(docs/custom-tasks.md's example). Before the runs, TRL's configurations are probed
(`dashrl.bench.trlprobe`: per-device train batches, then generation options at the fastest), and
the one with the fewest seconds per step runs TRL's side; the probe's table is printed and kept.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from dashrl.bench.tune import tuned_flags
from dashrl.bench.trlprobe import (
    PROBE_STEPS,
    TRLSetting,
    probe_table,
    probe_trl,
    trl_batch_candidates,
    trl_option_names,
)

# The quickstart (configs/quickstart.toml) with every field it depends on written out, so that
# another checkout whose defaults differ runs the same workload.
QUICKSTART = ["--model.name", "smollm2-135m", "--model.dtype", "auto", "--task.name", "arithmetic",
              "--task.difficulty", "1",
              "--sampler.batch_size", "64", "--sampler.max_new_tokens", "48", "--sampler.temperature", "0.7",
              "--algo.schedule", "dash", "--algo.prompts_per_step", "8", "--algo.group_size", "8", "--algo.beta", "0",
              "--train.lr", "2e-5", "--train.micro_batch_size", "8"]  # fmt: skip
TTR_REWARD = ["--reward.funcs", "integer"]  # the arithmetic task's own check, as a function TRL calls too
PARTS = ("sampling", "scoring", "backprop", "optimizer", "step")


def src_of(checkout: str | None) -> Path:
    """The `src` folder whose `dashrl` an arm runs: this package's own, or `checkout/src`."""
    if checkout is None:
        return Path(__file__).resolve().parents[2]
    src = Path(checkout) / "src"
    if not (src / "dashrl").is_dir():
        raise ValueError(
            f"--before: {checkout} holds no src/dashrl (expected a dashrl checkout, e.g. a git worktree of main)"
        )
    return src


def run_arm(
    module: list[str],
    src: Path,
    flags: Sequence[str],
    run_dir: Path,
    log_path: Path,
    stop_when: Callable[[], bool] | None = None,
) -> float:
    """Run `python -m MODULE FLAGS` with `src` first on PYTHONPATH; returns the wall-clock seconds.
    With `stop_when`, asked every second, the run gets SIGTERM once it says yes (dashrl ends after the
    step in hand; TRL at once), and how it then exits is no failure. A failed run raises with the tail
    of its log."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", *module, *flags, "--run.out_dir", str(run_dir.parent), "--run.name", run_dir.name]
    t0 = time.perf_counter()
    stopped = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while (code := proc.poll()) is None:
            time.sleep(1.0)
            if stop_when is not None and not stopped and stop_when():
                proc.terminate()
                stopped = True
    if code != 0 and not stopped:
        why = " (killed: SIGKILL, out of memory?)" if code == -9 else ""
        tail = log_path.read_text()[-1500:]
        raise ArmFailed(
            f"{' '.join(module)} for {run_dir.name} exited with {code}{why}; its log {log_path} ends:\n{tail}"
        )
    return time.perf_counter() - t0


class ArmFailed(RuntimeError):
    """A benchmark's run, in a process of its own, failed; the message names it and ends with its log's tail."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON rows of a metrics file; a last line still being written (no newline yet) is left out."""
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def split(rows: list[dict[str, Any]], n_params: int, peak_gflops: float) -> dict[str, float]:
    """Step 1's parts, the median of steps 2..N's, start-up, and MFU of sampling and backprop over steps 2..N.

    >>> r = [{"time/sampling_s": 4.0, "time/scoring_s": 0.2, "time/backprop_s": 5.0, "time/optimizer_s": 2.0,
    ...       "time/step_s": 11.2, "gen/sampled_tokens": 0, "train/tokens": 0, "time/startup_s": 9.0}]
    >>> r += [{"time/sampling_s": 3.0, "time/scoring_s": 0.0, "time/backprop_s": 4.0, "time/optimizer_s": 0.1,
    ...        "time/step_s": 7.1, "gen/sampled_tokens": 3000, "train/tokens": 4800,
    ...        "train/flops": 9_600_000}] * 2
    >>> s = split(r, n_params=1000, peak_gflops=1e-3)
    >>> (s["step1_optimizer"], s["later_optimizer"], s["startup"], round(s["mfu_sampling"], 3),
    ...  round(s["mfu_backprop"], 3), s["step1_outside_backprop_ratio"])
    (2.0, 0.1, 9.0, 2.0, 2.4, 2.0)
    """
    first, later = rows[0], rows[1:] or rows[:1]
    out: dict[str, float] = {"steps": float(len(rows)), "startup": float(first.get("time/startup_s", float("nan")))}
    for part in PARTS:
        out[f"step1_{part}"] = float(first.get(f"time/{part}_s", 0.0))
        out[f"later_{part}"] = statistics.median(float(r.get(f"time/{part}_s", 0.0)) for r in later)
    s1 = sum(out[f"step1_{p}"] for p in ("sampling", "scoring", "optimizer"))
    s2 = sum(out[f"later_{p}"] for p in ("sampling", "scoring", "optimizer"))
    out["step1_outside_backprop_ratio"] = s1 / s2 if s2 else float("nan")
    sampled = sum(float(r.get("gen/sampled_tokens", 0)) for r in later)
    trained = sum(float(r.get("train/tokens", 0)) for r in later)
    t_s = sum(float(r.get("time/sampling_s", 0.0)) for r in later)
    t_b = sum(float(r.get("time/backprop_s", 0.0)) for r in later)
    out["sampled_tok_per_s"] = sampled / t_s if t_s else 0.0
    out["trained_tok_per_s"] = trained / t_b if t_b else 0.0
    out["mfu_sampling"] = 2 * n_params * out["sampled_tok_per_s"] / (peak_gflops * 1e9)
    # Backprop's MFU counts the FLOPs the packed passes run (`train/flops`, dashrl.runtime.flops: the
    # body at every position, the LM head at completion positions, attention by the sequences'
    # lengths); an arm that does not log them (an older checkout) gets none rather than another count.
    flops = [r.get("train/flops") for r in later]
    out["mfu_backprop"] = (
        sum(float(f) for f in flops) / t_b / (peak_gflops * 1e9) if t_b and None not in flops else float("nan")
    )
    return out


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median repeat of an arm by its later step's time (of two: the slower), whole: every figure of
    a row then comes from one run, so no row mixes one repeat's times with another's MFU.

    >>> median_of([{"later_step": 5.0, "mfu_backprop": 0.5}, {"later_step": 6.0, "mfu_backprop": 0.4}])
    {'later_step': 6.0, 'mfu_backprop': 0.4}
    """
    return sorted(runs, key=lambda r: r["later_step"])[len(runs) // 2]


def split_table(results: dict[str, dict[str, float]]) -> str:
    """One row per arm: step 1 and steps 2..N per part, start-up, rates, MFU, and the step ratio to `before`."""
    base = results.get("before")
    head = ("| arm | " + " | ".join(f"{p} s (step 1 / later)" for p in PARTS)
            + " | step 1 outside backprop / later | start-up s | sampled tok/s | trained tok/s | MFU sampling"
              " | MFU backprop | later step vs before |")  # fmt: skip
    lines = [head, "|" + "---|" * (len(PARTS) + 8)]
    for arm, r in results.items():
        parts = " | ".join(f"{r[f'step1_{p}']:.2f} / {r[f'later_{p}']:.2f}" for p in PARTS)
        ratio = f"{base['later_step'] / r['later_step']:.2f}x" if base and r["later_step"] else "-"
        lines.append(f"| {arm} | {parts} | {r['step1_outside_backprop_ratio']:.2f} | {r['startup']:.1f} | "
                     f"{r['sampled_tok_per_s']:.0f} | {r['trained_tok_per_s']:.0f} | {100 * r['mfu_sampling']:.1f}% | "
                     f"{100 * r['mfu_backprop']:.1f}% | {ratio} |")  # fmt: skip
    return "\n".join(lines)


def _model_size(flags: Sequence[str]) -> tuple[int, str]:
    """Parameters of the arms' model and its name (the model loaded once, in this process)."""
    from dashrl.config import load_config
    from dashrl.models import load_model

    cfg = load_config(None, list(flags))
    model, _ = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    return sum(p.numel() for p in model.parameters()), cfg.model.name


def quickstart_run(args: argparse.Namespace) -> int:
    """`dashrl bench --workload quickstart`: the arms' splits side by side (module docstring)."""
    from dashrl.config import ConfigError, load_config
    from dashrl.runtime.hardware import log, matmul_peak
    from dashrl.runtime.io import atomic_write_text

    steps = args.steps or 4
    flags = QUICKSTART + ["--train.steps", str(steps), "--run.quiet", "true"] + list(args.overrides)
    try:
        load_config(None, flags)  # a bad override: one line, before anything runs
        arms = {"after": src_of(None)}
        if args.before:
            arms = {"before": src_of(args.before), **arms}
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_params, name = _model_size(flags)
    peak = matmul_peak("bf16")
    log(
        f"matmul peak bf16 {peak:.0f} GFLOP/s; {name}: {n_params / 1e6:.0f}M parameters; arms "
        f"{', '.join(f'{a} ({s})' for a, s in arms.items())}"
    )
    names = list(arms)
    per_arm: dict[str, list[dict[str, float]]] = {a: [] for a in names}
    for rep in range(args.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for arm in order:
            run_dir = out / "runs" / f"{arm}-{rep + 1}"
            shutil.rmtree(run_dir, ignore_errors=True)  # an earlier bench's run of this name
            wall = run_arm(["dashrl", "train"], arms[arm], flags, run_dir, out / f"{arm}-{rep + 1}.log")
            rows = read_rows(run_dir / "metrics.jsonl")
            per_arm[arm].append({**split(rows, n_params, peak), "wall": wall})
            log(
                f"repeat {rep + 1}/{args.repeats} {arm}: {wall:.0f}s wall, later step "
                f"{per_arm[arm][-1]['later_step']:.2f}s"
            )
    results = {a: median_of(per_arm[a]) for a in names}
    import torch

    c = load_config(None, flags)
    header = (f"Quickstart workload ({name}, {c.task.name}, {c.algo.prompts_per_step} prompts x {c.algo.group_size}, "
              f"at most {c.sampler.max_new_tokens} new tokens, {c.model.dtype}, beta {c.algo.beta:g}), {steps} steps "
              f"per run, the median of {args.repeats} interleaved repeats per arm by the later step (of two: the "
              f"slower), each a fresh `dashrl train` process; "
              f"later = median of steps 2..{steps}; torch threads {torch.get_num_threads()}; matmul peak bf16 "
              f"{peak:.0f} GFLOP/s.")  # fmt: skip
    text = f"{header}\n\n{split_table(results)}\n"
    atomic_write_text(out / "quickstart.md", text)
    atomic_write_text(out / "quickstart.json", json.dumps({"workload": header,
                                                           "arms": {a: str(s) for a, s in arms.items()},
                                                           "peak_gflops": peak, "results": results, "repeats": per_arm},
                                                          indent=1))  # fmt: skip
    print(text)
    return 0


# -- time to reward ----------------------------------------------------------------------------
def time_to_level(
    times: Sequence[float], rewards: Sequence[float], level: float, window: int
) -> tuple[float, int] | None:
    """The first (time, step) at which the mean of the last `window` rewards reaches `level`
    (fewer at the start: no level is declared before `window` steps), or None.

    >>> time_to_level([1, 2, 3, 4], [0.0, 0.5, 1.0, 1.0], level=0.75, window=2)
    (3, 3)
    >>> time_to_level([1, 2], [1.0, 1.0], level=0.5, window=3) is None
    True
    """
    for i in range(window - 1, len(rewards)):
        if sum(rewards[i - window + 1 : i + 1]) / window >= level:
            return times[i], i + 1
    return None


def training_clock(rows: list[dict[str, Any]]) -> list[float]:
    """Seconds of training at the end of each step, from the same point on both sides: the model
    loaded and training about to begin. TRL's `time/elapsed_s` runs from `on_train_begin`, so its
    first calls (the first generate, the first reward) fall in its first step; dashrl makes those
    calls in a warm-up before step 1 (`time/warmup_s`) and its `time/elapsed_s` runs from step 1,
    so the warm-up is added back: neither side's first calls are left out.

    >>> training_clock([{"time/elapsed_s": 2.0, "time/warmup_s": 0.5}, {"time/elapsed_s": 3.0}])
    [2.5, 3.5]
    """
    warm = float(rows[0].get("time/warmup_s", 0.0)) if rows else 0.0
    return [float(r["time/elapsed_s"]) + warm for r in rows]


def ttr_table(per: dict[str, list[dict[str, Any]]], level: float, window: int) -> str:
    """One row per side over its repeats: how many reached `level`, the time to it and the seconds per
    step as median (min-max), the median-time repeat's rolling reward, and both ratios to dashrl's
    medians. A repeat that never reached the level counts as the slowest; a median among those is
    "not reached"."""
    lines = [
        f"| run | repeats reaching {level:g} | time to {level:g}: median (range), s | s / step: median (range) | "
        f"rolling reward ({window} steps) first -> best | time to {level:g}: TRL / dashrl | s / step: TRL / dashrl |",
        "|---|---|---|---|---|---|---|",
    ]
    med = {name: ttr_medians(runs) for name, runs in per.items() if runs}  # a side not run yet: no row
    base = med.get("dashrl")
    for name, (ttr, sps, mid) in med.items():
        runs = per[name]
        reached = [r["ttr"][0] for r in runs if r["ttr"]]
        cell = (f"{ttr:.1f} ({min(reached):.1f}-{max(reached):.1f}), step {mid['ttr'][1]}"
                if ttr != float("inf") else f"not reached in {mid['steps']} steps")  # fmt: skip
        per_step = [r["s_per_step"] for r in runs]
        other = base is not None and name != "dashrl"
        lines.append(
            f"| {name} | {len(reached)} of {len(runs)} | {cell} | "
            f"{sps:.2f} ({min(per_step):.2f}-{max(per_step):.2f}) | "
            f"{mid['rolling_first']:.3f} -> {mid['rolling_best']:.3f} | "
            f"{ratio(ttr, base[0]) if other else '-'} | {ratio(sps, base[1]) if other else '-'} |"
        )
    return "\n".join(lines)


def ttr_medians(runs: list[dict[str, Any]]) -> tuple[float, float, dict[str, Any]]:
    """A side's median time to the level (upper median; not reached counts as infinite), median seconds
    per step, and the repeat whose time is the median.

    >>> r = lambda t, s: {"ttr": (t, 3) if t else None, "s_per_step": s}
    >>> ttr_medians([r(9.0, 2.0), r(None, 3.0), r(5.0, 1.0)])[:2]
    (9.0, 2.0)
    >>> ttr_medians([r(None, 2.0), r(None, 3.0), r(5.0, 1.0)])[0]
    inf
    """
    ranked = sorted(runs, key=lambda r: r["ttr"][0] if r["ttr"] else float("inf"))
    mid = ranked[len(ranked) // 2]
    return (mid["ttr"][0] if mid["ttr"] else float("inf"), statistics.median(r["s_per_step"] for r in runs), mid)


def ratio(x: float, base: float) -> str:
    """`x / base` as a table cell: "2.50x", or "-" where either is not a finite time."""
    return f"{x / base:.2f}x" if 0 < base < float("inf") and x < float("inf") else "-"


def reached_level(metrics: Path, level: float, window: int) -> bool:
    """Whether a run's metrics so far (none yet: no) reach `level` in a rolling mean over `window` steps."""
    return metrics.exists() and ttr_summary(read_rows(metrics), level, window)["ttr"] is not None


def ttr_summary(rows: list[dict[str, Any]], level: float, window: int) -> dict[str, Any]:
    rewards = [float(r["reward/mean"]) for r in rows]
    times = training_clock(rows)
    rolling = [
        sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1])
        for i in range(len(rewards))
    ]
    return {"steps": len(rows), "s_per_step": times[-1] / len(rows) if rows else float("nan"),
            "ttr": time_to_level(times, rewards, level, window),
            "rolling_first": rolling[0] if rolling else float("nan"),
            "rolling_best": max(rolling) if rolling else float("nan"),
            "curve": list(zip(times, rewards))}  # fmt: skip


def trl_probe_seconds(flags: list[str], setting: TRLSetting, out: Path) -> float:
    """Seconds per step of TRL in `setting`: `PROBE_STEPS` steps in a process of its own, timed from
    the end of its first step (TRL's first calls left out) to the end of the last; NaN if it failed."""
    from dashrl.runtime.hardware import log

    name = f"trl-batch-{setting.batch}" + (f"-{setting.option}" if setting.option else "")
    run_dir = out / "probe" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # an earlier bench's run of this name
    probe = [*flags, *setting.flags(), "--train.steps", str(PROBE_STEPS)]
    log_path = out / f"probe-{name.replace('trl-batch-', 'trl-')}.log"
    try:
        run_arm(["dashrl.peers.trl_task"], src_of(None), probe, run_dir, log_path)
    except ArmFailed as e:
        log(f"TRL {setting.label}: failed here ({str(e).splitlines()[0]})")
        return float("nan")
    times = training_clock(read_rows(run_dir / "trl_metrics.jsonl"))
    seconds = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else times[-1]
    log(f"TRL {setting.label}: {seconds:.2f} s/step")
    return seconds


def ttr_run(args: argparse.Namespace) -> int:
    """`dashrl bench --ttr`: dashrl and TRL to a reward level (module docstring)."""
    from dashrl.config import ConfigError, load_config
    from dashrl.runtime.io import atomic_write_text

    steps = args.steps or 30
    config = getattr(args, "config", None)  # a run file or shipped config instead of the quickstart's settings
    overrides = list(args.overrides)
    own_funcs = any(o == "--reward.funcs" for o in overrides)
    flags = (
        ([] if config else QUICKSTART)
        + ([] if own_funcs else TTR_REWARD)
        + ["--train.steps", str(steps), "--run.quiet", "true"]
        + overrides
    )
    try:
        cfg = load_config(config, flags)
        from dashrl.peers.trl_grpo import trl_available

        if not trl_available():
            raise ValueError("--ttr needs TRL: pip install 'dashrl[bench]'")
        batches = trl_batch_candidates(cfg.algo.samples_per_step, args.trl_batches)
        options = trl_option_names(getattr(args, "trl_options", "none"))
        from dashrl.peers.trl_task import shared_tool_template

        template = shared_tool_template(cfg)  # with an environment: a tool-calling template both sides use
        tuned = tuned_flags(args.tuned) if getattr(args, "tuned", None) else []  # dashrl's side only
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2
    flags = (["--config", config] if config else []) + flags
    flags += ["--model.chat_template", template] if template else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen, probe = probe_trl(batches, options, lambda s: trl_probe_seconds(flags, s, out))
    if probe:
        print(f"{probe_table(probe, cfg.algo.samples_per_step, chosen)}\n")
    header = ttr_header(cfg, args, steps, template, chosen, bool(probe)) + tuned_note(args, tuned)
    probed = f"\nTRL's configurations, probed:\n\n{probe_table(probe, cfg.algo.samples_per_step, chosen)}\n"

    def write(per: dict[str, list[dict[str, Any]]]) -> str:  # after every run, so a killed bench keeps its repeats
        done = sum(len(v) for v in per.values())
        note = "" if done == 2 * args.repeats else f" So far {done} of {2 * args.repeats} runs."
        table = ttr_table(per, args.level, args.window) if args.repeats else "(--repeats 0: the probe alone)"
        text = f"{header}{note}\n\n{table}\n" + (probed if probe else "")
        atomic_write_text(out / "ttr.md", text)
        payload = {"workload": header + note, "flags": flags, "dashrl_flags": flags + tuned, "trl_batch": chosen.batch,
                   "trl_option": chosen.option,
                   "trl_probe_s_per_step": {k: None if math.isnan(v) else v for k, v in probe.items()},  # failed: null
                   "repeats": per}  # fmt: skip
        atomic_write_text(out / "ttr.json", json.dumps(payload, indent=1))
        return text

    per = ttr_repeats(args, flags + tuned, out, trl_flags=[*flags, *chosen.flags()], after_run=write)
    print(write(per))
    return 0


def tuned_note(args: argparse.Namespace, tuned: list[str]) -> str:
    """The header's sentence on dashrl's settings from `--tuned` (none without it).

    >>> tuned_note(argparse.Namespace(tuned="t.toml"), ["--sampler.batch_size", "32", "--train.pass_tokens", "0"])
    ' dashrl with the settings `dashrl tune` wrote to t.toml: sampler.batch_size 32, train.pass_tokens 0.'
    """
    if not tuned:
        return ""
    pairs = ", ".join(f"{k.removeprefix('--')} {v}" for k, v in zip(tuned[::2], tuned[1::2]))
    return f" dashrl with the settings `dashrl tune` wrote to {args.tuned}: {pairs}."


def ttr_header(
    cfg: Any, args: argparse.Namespace, steps: int, template: str | None, chosen: TRLSetting, probed: bool
) -> str:
    """The time-to-reward table's conditions, as one paragraph."""
    env = (f", environment {cfg.env.factory_spec} (at most {cfg.env.max_turns} model turns, {cfg.env.max_tokens} "
           f"tokens after the prompt; chat template {cfg.model.chat_template or template or 'its own'})"
           if cfg.env.enabled else "")  # fmt: skip
    return (f"Time to reward: {cfg.model.name} ({cfg.model.dtype}), task {cfg.task.name}{env}, reward "
              f"{cfg.reward.funcs}, {cfg.algo.prompts_per_step} prompts x {cfg.algo.group_size}, at most "
              f"{cfg.sampler.max_new_tokens} new tokens, beta {cfg.algo.beta:g}, lr {cfg.train.lr:g}, {steps} steps; "
              f"level {args.level:g} of the training reward's rolling mean over {args.window} steps; training seconds "
              f"from the model loaded (dashrl's warm-up counted, as TRL's first calls are); {args.repeats} "
              f"repeat(s) per side, the order swapped every repeat, each run a process of its own, ended at the "
              f"level; TRL per-device batch {chosen.batch} x {cfg.algo.samples_per_step // chosen.batch} "
              f"accumulation steps{f', generation with {chosen.option}' if chosen.option else ''}"
              f"{' (the fastest probed)' if probed else ''}.")  # fmt: skip


def ttr_repeats(
    args: argparse.Namespace,
    flags: list[str],
    out: Path,
    trl_flags: list[str] | None = None,
    after_run: Callable[[dict[str, list[dict[str, Any]]]], Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """`--repeats` runs of dashrl and of TRL, in turn (the order swapped every repeat), each a process
    of its own with the same `flags` (TRL's: `trl_flags`, the same with its probed configuration): each
    run's time-to-reward summary, per side. `after_run` gets the summaries so far after every run."""
    from dashrl.runtime.hardware import log

    src = src_of(None)
    per: dict[str, list[dict[str, Any]]] = {"dashrl": [], "trl": []}
    for rep in range(args.repeats):
        for name in ["dashrl", "trl"] if rep % 2 == 0 else ["trl", "dashrl"]:
            run_dir = out / "runs" / f"{name}-{rep + 1}"
            shutil.rmtree(run_dir, ignore_errors=True)  # an earlier bench's run of this name
            module = ["dashrl", "train"] if name == "dashrl" else ["dashrl.peers.trl_task"]
            side = flags if name == "dashrl" else (trl_flags or flags)
            metrics = run_dir / ("metrics.jsonl" if name == "dashrl" else "trl_metrics.jsonl")
            reached = functools.partial(reached_level, metrics, args.level, args.window)
            wall = run_arm(module, src, side, run_dir, out / f"{name}-{rep + 1}.log", stop_when=reached)
            rows = read_rows(metrics)
            per[name].append(ttr_summary(rows, args.level, args.window))
            t = per[name][-1]["ttr"]
            log(
                f"repeat {rep + 1}/{args.repeats} {name}: {wall:.0f}s wall, "
                + (f"level {args.level:g} at {t[0]:.0f}s (step {t[1]})" if t else "level not reached")
            )
            if after_run:
                after_run(per)
    return per
