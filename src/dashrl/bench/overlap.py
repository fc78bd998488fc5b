"""Overlap benchmark: sampling ahead of training (`--dist.overlap 1`, with the `ppo_clip` loss that
it requires) against the synchronous run.

    python -m dashrl.bench.overlap                 # 6 steps per arm, SmolLM2-135M, arithmetic
    python -m dashrl.bench.overlap --steps 8 --sampler.batch_size 2

Three arms of `dashrl train`, each in its own process, on one workload (the default model on
the arithmetic task, M = 4 prompts x G = 4, 32 new tokens, inference batch 4, `ppo_clip`),
chosen so that one step's sampling and its backprop take about as long on one core:

- `single`: one process pinned to one core (`os.sched_setaffinity`, one torch thread);
- `ray o=0`: 1 sampler + 1 trainer actor, each pinned to a core of its own
  (`--dist.pin_cores`: `os.sched_setaffinity` inside the actors; Ray only counts CPUs), the
  exact synchronous schedule (same samples and rewards as `single`);
- `ray o=1`: the same actors, `--dist.overlap 1`: step s+1 is sampled while step s trains.

Prints two tables: s/step (wall time between the first and the last step's rows, over the
steps after the first) with the busy seconds of sampling and backprop per step, and the
reward of every step side by side. Arms run one after another, so machine noise is not
shared as in `dashrl bench`; read ratios, and rerun on a busy machine (with `--out DIR`, a
rerun reuses the arms that finished). No test reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKLOAD = ["--task.name", "arithmetic", "--task.difficulty", "1", "--sampler.max_new_tokens", "32",
            "--sampler.temperature", "0.7", "--sampler.batch_size", "4", "--algo.prompts_per_step", "4",
            "--algo.group_size", "4", "--algo.loss", "ppo_clip", "--train.micro_batch_size", "8",
            "--train.lr", "2e-5", "--train.warmup_steps", "0", "--run.loggers", "", "--run.quiet", "true"]  # fmt: skip
RAY = ["--dist.samplers", "1", "--dist.trainers", "1", "--dist.pin_cores", "true"]
ARMS: dict[str, list[str]] = {
    "single": [],
    "ray o=0": [*RAY, "--dist.overlap", "0"],
    "ray o=1": [*RAY, "--dist.overlap", "1"],
}


def run_arm(name: str, flags: list[str], out: Path) -> list[dict[str, Any]]:
    """One `dashrl train` in a subprocess; its metrics rows. `single` is pinned to one core."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path[1:] if sys.path[0] == "" else sys.path)}
    pin = None
    if name == "single":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        core = min(os.sched_getaffinity(0))
        pin = lambda: os.sched_setaffinity(0, {core})  # noqa: E731  (runs in the child before exec)
    run_name = name.replace(" ", "_").replace("=", "")
    if (out / run_name / "summary.md").is_file():  # finished in an earlier call with the same --out
        print(f"[overlapbench] {name}: reusing {out / run_name}", file=sys.stderr, flush=True)
        return [json.loads(line) for line in (out / run_name / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(out / run_name, ignore_errors=True)  # an arm that did not finish starts over
    cmd = [sys.executable, "-m", "dashrl.cli", "train", *flags, "--run.out_dir", str(out), "--run.name", run_name]
    print(f"[overlapbench] {name}: {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True, preexec_fn=pin)
    return [json.loads(line) for line in (out / run_name / "metrics.jsonl").read_text().splitlines()]


def busy(row: dict[str, Any]) -> tuple[float, float]:
    """Seconds the sampler and the trainer worked in this step's row."""
    sampling = row.get("dist/sampler0/time_s", row.get("time/sampling_s", 0.0) + row.get("time/scoring_s", 0.0))
    return sampling, row.get("dist/trainer0/backprop_s", row.get("time/backprop_s", 0.0))


def s_per_step(rows: list[dict[str, Any]]) -> float:
    """Wall seconds per step after the first (which includes start-up and cannot overlap)."""
    if len(rows) < 2:
        return rows[0]["time/step_s"]
    return (rows[-1]["time/elapsed_s"] - rows[0]["time/elapsed_s"]) / (len(rows) - 1)


def tables(results: dict[str, list[dict[str, Any]]]) -> str:
    base = s_per_step(results["single"]) if "single" in results else None
    lines = [
        "| arm | s/step | vs single | sampling busy s/step | backprop busy s/step | staleness | reward mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        sps = s_per_step(rows)
        samp, back = zip(*(busy(r) for r in rows))
        stale = statistics.mean(r.get("dist/staleness_mean", 0.0) for r in rows)
        reward = statistics.mean(r["reward/mean"] for r in rows)
        vs = f"{base / sps:.2f}x" if base else "-"
        lines.append(
            f"| {name} | {sps:.2f} | {vs} | {statistics.mean(samp):.2f} | {statistics.mean(back):.2f} "
            f"| {stale:.2f} | {reward:.3f} |"
        )
    steps = max(len(rows) for rows in results.values())
    lines += ["", "| step | " + " | ".join(f"reward {n}" for n in results) + " |", "|---" * (len(results) + 1) + "|"]
    for i in range(steps):
        cells = [f"{rows[i]['reward/mean']:.3f}" if i < len(rows) else "" for rows in results.values()]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per arm")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {list(ARMS)}")
    ap.add_argument(
        "--out",
        default=None,
        help="keep the run folders here (default: a temporary folder); "
        "a rerun with the same --out reuses the arms that finished",
    )
    args, overrides = ap.parse_known_args(argv)  # --section.field VALUE flags go to every arm
    flags = [*WORKLOAD, "--train.steps", str(args.steps), *overrides]
    with tempfile.TemporaryDirectory(prefix="overlapbench-") as tmp:
        out = Path(args.out or tmp)
        results = {name: run_arm(name, [*flags, *ARMS[name]], out) for name in args.arms.split(",")}
    print(f"overlap bench: {args.steps} steps per arm, {os.cpu_count()} cores on this node")
    print(tables(results))


if __name__ == "__main__":
    main()
