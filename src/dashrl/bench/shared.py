"""Two runs at once against one alone, on dashrl's own work: `python -m dashrl.bench.shared`.

    python -m dashrl.bench.shared                                   # the quickstart's model and task
    python -m dashrl.bench.shared --policies today,dashrl --repeats 3 --out shared
    python -m dashrl.bench.shared --model.name runs/x/checkpoints/step-000030 --sampler.max_new_tokens 128

For each OpenMP policy it starts one worker alone, then two at once; each worker loads the model,
then times `--repeats` sampling rollouts (one step's M x G samples) and as many backprop passes
over them, as a training step does. The second worker of a pair starts while the first is
already busy (untimed warm-up steps), as a second experiment starts beside a running one, and
both begin their timed steps together. The table gives each phase's mean seconds alone, at
once (both workers), and the ratio; a fair share of a machine between two runs is 2x.

Policies: `today` (libgomp's default spin, GOMP_SPINCOUNT=300000), `passive`
(OMP_WAIT_POLICY=PASSIVE), `spinN` (GOMP_SPINCOUNT=N), and `dashrl` (nothing set: each worker's
`dashrl.runtime.openmp.apply` chooses, as a run does). Every worker runs with torch's default thread
count unless `--threads` is given. Writes shared.md and shared.json to `--out`. Imports only the
standard library until a worker runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLICIES = {"today": {"GOMP_SPINCOUNT": "300000"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "dashrl": {}}
PHASES = ("sampling", "backprop")


def policy_env(name: str) -> dict[str, str]:
    """The environment settings of a policy name.

    >>> policy_env("spin1000"), policy_env("passive")
    ({'GOMP_SPINCOUNT': '1000'}, {'OMP_WAIT_POLICY': 'PASSIVE'})
    """
    if name in POLICIES:
        return POLICIES[name]
    if name.startswith("spin") and name[4:].isdigit():
        return {"GOMP_SPINCOUNT": name[4:]}
    raise ValueError(f"--policies: unknown {name!r}; valid: today, passive, dashrl, spinN (e.g. spin10000)")


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: per policy and phase, mean seconds alone, at once (each worker) and the ratio.

    Alone against `today` alone is the cost of a policy to a run that has the machine to itself.

    >>> r = {"today": {"alone": {"sampling": 2.0}, "pair": [{"sampling": 12.0}, {"sampling": 13.0}],
    ...                "choice": ["OpenMP a", "b", "c"]},
    ...      "passive": {"alone": {"sampling": 4.0}, "pair": [{"sampling": 4.0}, {"sampling": 5.0}],
    ...                  "choice": ["d", "e", "f"]}}
    >>> print("\\n".join(table(r).splitlines()[-2:]))
    | today | sampling | 2.00 | 1.00x | 12.00, 13.00 | 6.25x | a / b, c |
    | passive | sampling | 4.00 | 2.00x | 4.00, 5.00 | 1.12x | d / e, f |
    """
    today = results.get("today", {}).get("alone", {})
    lines = ["| policy | phase | alone s | alone / today's alone | two at once s (each) | at once / alone | OpenMP "
             "chosen (alone / the pair) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in results.items():
        for i, phase in enumerate(r["alone"]):
            alone, pair = r["alone"][phase], [w[phase] for w in r["pair"]]
            vs_today = f"{alone / today[phase]:.2f}x" if phase in today else "-"
            choice = " / ".join([r["choice"][0], ", ".join(r["choice"][1:])]).replace("OpenMP ", "") if i == 0 else ""
            lines.append(f"| {name} | {phase} | {alone:.2f} | {vs_today} | {', '.join(f'{p:.2f}' for p in pair)} | "
                         f"{sum(pair) / len(pair) / alone:.2f}x | {choice} |")  # fmt: skip
    return "\n".join(lines)


def worker(args: argparse.Namespace) -> int:
    """One run's work: load, warm up until `--go` exists, then time the phases; JSON on stdout."""
    from dashrl.runtime import openmp

    choice = openmp.apply()
    from dataclasses import replace

    import torch

    from dashrl.config import load_config
    from dashrl.models import load_model
    from dashrl.algo.advantages import full_norm
    from dashrl.train.metrics import silence_transformers_bars
    from dashrl.train.loop import local_backend

    silence_transformers_bars()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    model, tok = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    source, trainer = local_backend(cfg, model, tok, 1)
    batch = source.task.batch(0, cfg.algo.prompts_per_step)

    def sample(seed: int) -> list[Any]:
        samples = source.rollout(batch, seed=seed).samples
        return [
            replace(s, advantage=1.0 if i % 2 == 0 else -1.0) for i, s in enumerate(samples)
        ]  # every sample carries gradient

    def backprop(samples: list[Any]) -> None:
        model.zero_grad(set_to_none=True)
        trainer.backprop(samples, full_norm(samples, cfg.sampler.max_new_tokens))

    samples = sample(0)
    backprop(samples)
    Path(args.ready).touch()
    while not Path(args.go).exists():  # busy until the other worker is ready too
        backprop(samples)
    seconds: dict[str, list[float]] = {p: [] for p in PHASES}
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        samples = sample(rep + 1)
        seconds["sampling"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        backprop(samples)
        seconds["backprop"].append(time.perf_counter() - t0)
    print(json.dumps({"choice": choice, "threads": torch.get_num_threads(), "seconds": seconds}))
    return 0


def _start(args: argparse.Namespace, env: dict[str, str], ready: Path, go: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dashrl.bench.shared", "--worker", "--ready", str(ready), "--go", str(go),
           "--repeats", str(args.repeats), "--threads", str(args.threads),
           *(["--config", args.config] if args.config else []), *args.overrides]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def _wait_ready(procs: list[subprocess.Popen], files: list[Path]) -> None:
    while not all(f.exists() for f in files):
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(
                    f"a worker ended before it was ready (exit status {p.returncode}); run it alone to see why"
                )
        time.sleep(0.2)


def _finish(proc: subprocess.Popen) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"a worker failed (exit status {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def measure(args: argparse.Namespace, policy: str, tmp: Path) -> dict[str, Any]:
    """One policy: a worker alone, then two (the second started while the first is busy)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DASHRL_OPENMP", "DASHRL_OPENMP_PID")
    }
    env.update(policy_env(policy))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    files = {n: tmp / f"{policy}-{n}" for n in ("ready-alone", "go-alone", "ready-a", "ready-b", "go-pair")}
    started: list[subprocess.Popen] = []
    try:
        started.append(_start(args, env, files["ready-alone"], files["go-alone"]))
        _wait_ready(started[:1], [files["ready-alone"]])
        files["go-alone"].touch()
        solo = _finish(started[0])
        print(
            f"[bench_shared] {policy} alone: " + ", ".join(f"{p} {mean(s):.2f}s" for p, s in solo["seconds"].items()),
            file=sys.stderr,
        )
        started.append(_start(args, env, files["ready-a"], files["go-pair"]))
        _wait_ready(started[1:], [files["ready-a"]])
        started.append(
            _start(args, env, files["ready-b"], files["go-pair"])
        )  # its OpenMP choice sees the first one busy
        _wait_ready(started[1:], [files["ready-a"], files["ready-b"]])
        files["go-pair"].touch()
        pair = [_finish(started[1]), _finish(started[2])]
    finally:  # an interrupted or failed measurement leaves no worker behind
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(
        f"[bench_shared] {policy} two at once: "
        + "; ".join(", ".join(f"{p} {mean(s):.2f}s" for p, s in w["seconds"].items()) for w in pair),
        file=sys.stderr,
    )
    return {
        "alone": {p: mean(s) for p, s in solo["seconds"].items()},
        "pair": [{p: mean(s) for p, s in w["seconds"].items()} for w in pair],
        "choice": [solo["choice"], *(w["choice"] for w in pair)],
        "threads": solo["threads"],
        "raw": {"alone": solo, "pair": pair},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dashrl.bench.shared", description="two runs at once against one alone, per OpenMP policy"
    )
    p.add_argument(
        "--policies", default="today,passive,spin10000,dashrl", help="comma-separated: today, passive, dashrl, spinN"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed sampling rollouts and backprop passes per worker")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: torch's own, as a run)")
    p.add_argument("--config", default=None, help="TOML run file for the workload (default: the quickstart)")
    p.add_argument("--out", default="shared", help="folder for shared.md and shared.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ready", help=argparse.SUPPRESS)
    p.add_argument("--go", help=argparse.SUPPRESS)
    args, args.overrides = p.parse_known_args(argv)
    if args.worker:
        return worker(args)
    from dashrl.config import ConfigError, load_config

    try:
        names = [n.strip() for n in args.policies.split(",") if n.strip()]
        for n in names:
            policy_env(n)
        cfg = load_config(args.config, args.overrides)
    except (ValueError, ConfigError) as e:
        print(f"dashrl bench_shared: {e}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout` or a kill: end the workers too
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in names:
                results[n] = measure(args, n, Path(tmp))
    except KeyboardInterrupt:
        print(
            "dashrl bench_shared: interrupted" + ("; the policies finished so far follow" if results else ""),
            file=sys.stderr,
        )
    except RuntimeError as e:
        print(f"dashrl bench_shared: {e}", file=sys.stderr)
        return 1
    if not results:
        return 130
    cores = len(os.sched_getaffinity(0))
    header = (f"Two runs at once against one alone: {cfg.model.name}, task {cfg.task.name}, "
              f"M={cfg.algo.prompts_per_step}, G={cfg.algo.group_size}, max_new_tokens={cfg.sampler.max_new_tokens}; "
              f"{args.repeats} timed sampling rollouts and backprop passes per worker, means; {cores} cores, "
              f"{next(iter(results.values()))['threads']} torch threads per worker.")  # fmt: skip
    text = f"{header}\n\n{table(results)}\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from dashrl.runtime.io import atomic_write_text

    atomic_write_text(out / "shared.md", text)
    atomic_write_text(out / "shared.json", json.dumps({"workload": header, "results": results}, indent=1))
    print(text)
    return 0 if len(results) == len(names) else 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
