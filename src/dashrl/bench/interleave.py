"""Variants run in turn, one step of each, the order rotating: what every side-by-side bench of
training steps shares (`dashrl.bench.steps`, `dashrl.bench.algos`)."""

from __future__ import annotations

import copy
from typing import Any, Callable

from dashrl.runtime.hardware import log


def interleave(
    steppers: dict[str, Callable[[int], list[dict[str, Any]]]], steps: int
) -> tuple[dict[str, list], dict[str, list], int]:
    """Run `steps` steps of every variant in turn, the order rotating each step: the rows and
    reward-against-time curves of each, and how many steps every variant finished. A Ctrl-C
    stops it there and keeps only the steps that every variant finished, so the variants are
    still compared on the same steps.

    >>> rows, curves, done = interleave({"a": lambda step: [{"time/step_s": 1.0, "reward/mean": step / 2}]}, 2)
    >>> done, len(rows["a"]), curves["a"]
    (2, 2, [(1.0, 0.0), (2.0, 0.5)])
    """
    names = list(steppers)
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in names}
    curves: dict[str, list[tuple[float, float]]] = {v: [] for v in names}
    clock = dict.fromkeys(names, 0.0)
    done, finished = 0, dict.fromkeys(names, 0)  # steps every variant finished, and their rows
    try:
        for step in range(steps):
            order = names[step % len(names) :] + names[: step % len(names)]
            for v in order:
                for row in steppers[v](step):
                    row.pop("_samples", None)  # the run loop's sample log; a bench keeps numbers only
                    rows[v].append(row)
                    clock[v] += row["time/step_s"]
                    curves[v].append((clock[v], row.get("reward/mean") or 0.0))
                    log(
                        f"step {step + 1}/{steps} {v}: {row['time/step_s']:.1f}s reward "
                        f"{row.get('reward/mean') or 0:.3f}"
                    )
            done, finished = step + 1, {v: len(rows[v]) for v in names}
    except KeyboardInterrupt:
        log(f"interrupted in step {done + 1}: keeping the {done} step(s) that every variant finished")
        rows = {v: rows[v][: finished[v]] for v in names}
        curves = {v: curves[v][: finished[v]] for v in names}
    return rows, curves, done


def warm_up(cfg: Any, model: Any, tok: Any) -> None:
    """One untimed step of `cfg`'s schedule on a throwaway copy of `model`, so that start-up
    costs (allocator, thread pool, kernel caches) land on no variant's timed steps."""
    from dashrl.train.schedules import SCHEDULE_FNS, schedule_name
    from dashrl.train.loop import local_backend

    SCHEDULE_FNS[schedule_name(cfg)](*local_backend(cfg, copy.deepcopy(model), tok, 1), 0)
