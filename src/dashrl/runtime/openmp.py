"""How this process's OpenMP threads wait between parallel regions, chosen before torch loads
libgomp (it reads its settings once, when `import torch` loads it).

libgomp's threads spin while they wait for the next parallel region: by default 300,000 pause
instructions (milliseconds) before they sleep. Alone on a machine that costs nothing. Beside a
second busy process it is ruinous: a spinning thread holds a core the other process's threads
need, and each process's barriers wait on threads the other's spinning has pushed off their
cores (a matmul loop measured 6.4x slower with two processes on 2 cores, where a fair share is
2x). Waiting passively (`OMP_WAIT_POLICY=PASSIVE`: sleep at once) is fair but slows a run that
is alone (2.1 s -> 4.5 s on that loop: every region pays a wake-up).

So dashrl chooses per process, at its start (`choose`):

- other processes already keep cores busy (`other_busy_cores`, sampled from /proc/stat over
  the cores this process may use, or in a container with a CPU quota from its own cgroup's
  usage) -> `OMP_WAIT_POLICY=PASSIVE`;
- otherwise a bounded spin, `GOMP_SPINCOUNT=SPIN`: back-to-back kernels still find their
  threads awake, while a wait that is long (or a core that another process needs) is given up
  after a fraction of a millisecond instead of several;
- `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` set by the user are kept as they are, and so is a
  process that imported torch before dashrl could choose (too late: the log line says so).

The thread count is not changed: it stays torch's (or `OMP_NUM_THREADS`), so a run's bits do
not depend on what else the machine was doing (on AMX CPUs they depend on the thread count,
docs/repeatability.md), and a run alone keeps all its cores. The choice, in words, with how it
was made (the load sample, the user's own settings), is kept in the environment (`MARK`) for the
run's first line and its checkpoints' kernel record (`recorded`). Child processes started during
a run inherit the settings (Ray's workers through the runtime environment, `inherited`) and report
them as set; `dashrl.train`, a run inside the caller's own process, takes them out of the
environment again when it ends. Imports only the standard library. `python -m dashrl.bench.shared` measures
each policy (docs/shared-machine.md).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Mapping

SPIN = 10000  # GOMP_SPINCOUNT when the machine is free: tens to hundreds of microseconds of spinning
BUSY_CORES = 0.5  # other processes' busy cores from which a run waits passively
MARK = "DASHRL_OPENMP"  # the choice, in words
CHOSEN_BY = "DASHRL_OPENMP_PID"  # the process that made it (a child process chooses again)
SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # what a child process (a Ray worker) starts with
CGROUP = Path("/sys/fs/cgroup")  # a container's own cgroup (v2), where its CPU quota and usage are


def _cpu_jiffies(cores: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over `cores`, from /proc/stat (None where there is none)."""
    busy = total = 0
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, _, rest = line.partition(" ")
                if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
                    continue
                values = [int(v) for v in rest.split()]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                total += sum(values[:8])
                busy += sum(values[:8]) - idle
    except (OSError, ValueError):
        return None
    return (busy, total) if total else None


def _container_cpu_seconds(root: Path) -> float | None:
    """CPU seconds used so far by this container's processes, where it runs under a CPU quota
    (cgroup v2 `cpu.max`); None without one (then the machine's /proc/stat is this process's share)."""
    try:
        if (root / "cpu.max").read_text().split()[0] == "max":
            return None
        for line in (root / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return None


def other_busy_cores(interval: float = 0.25, cgroup: Path = CGROUP) -> float | None:
    """How many cores other processes keep busy, sampled over `interval` seconds (this process
    sleeps meanwhile): in a container with a CPU quota, its other processes (the host's load is
    not this container's to share); else every process, over the cores this process may use.
    None where neither can be read."""
    try:
        cores = set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None
    used0, before, own0 = _container_cpu_seconds(cgroup), _cpu_jiffies(cores), sum(os.times()[:2])
    t0 = time.monotonic()
    time.sleep(interval)
    used1, after, own1 = _container_cpu_seconds(cgroup), _cpu_jiffies(cores), sum(os.times()[:2])
    elapsed = time.monotonic() - t0
    if used0 is not None and used1 is not None:
        return max(0.0, (used1 - used0 - (own1 - own0)) / elapsed)
    if before is None or after is None or after[1] <= before[1]:
        return None
    busy, total = after[0] - before[0], after[1] - before[1]
    return max(0.0, len(cores) * busy / total - (own1 - own0) / elapsed)


def choose(environ: Mapping[str, str], busy: float | None, torch_loaded: bool) -> dict[str, str]:
    """The environment settings for this process's OpenMP threads, with `MARK` saying why.

    >>> choose({}, busy=0.1, torch_loaded=False)
    {'GOMP_SPINCOUNT': '10000', 'DASHRL_OPENMP': 'OpenMP spin 10000 (other processes keep 0.1 cores busy)'}
    >>> choose({}, busy=None, torch_loaded=False)[MARK]
    'OpenMP spin 10000 (the load could not be read)'
    >>> choose({}, busy=1.6, torch_loaded=False)[MARK]
    'OpenMP passive (other processes keep 1.6 cores busy)'
    >>> choose({"OMP_WAIT_POLICY": "ACTIVE"}, busy=1.6, torch_loaded=False)
    {'DASHRL_OPENMP': 'OpenMP as set (OMP_WAIT_POLICY=ACTIVE)'}
    >>> choose({}, busy=0.0, torch_loaded=True)[MARK]
    'OpenMP unchanged (torch was imported before dashrl could set it)'
    """
    given = [f"{k}={environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ]
    if given:
        return {MARK: f"OpenMP as set ({', '.join(given)})"}
    if torch_loaded:
        return {MARK: "OpenMP unchanged (torch was imported before dashrl could set it)"}
    if busy is not None and busy >= BUSY_CORES:
        return {"OMP_WAIT_POLICY": "PASSIVE", MARK: f"OpenMP passive (other processes keep {busy:.1f} cores busy)"}
    why = "the load could not be read" if busy is None else f"other processes keep {busy:.1f} cores busy"
    return {"GOMP_SPINCOUNT": str(SPIN), MARK: f"OpenMP spin {SPIN} ({why})"}


def apply() -> str:
    """Choose and set this process's OpenMP settings (once; later calls only read the choice) and
    return the choice in words, for the run's log line. Call it before torch is imported."""
    if os.environ.get(CHOSEN_BY) != str(os.getpid()) or MARK not in os.environ:
        loaded = "torch" in sys.modules
        given = any(k in os.environ for k in SETTINGS)
        busy = None if loaded or given else other_busy_cores()
        os.environ.update(choose(os.environ, busy, loaded), **{CHOSEN_BY: str(os.getpid())})
    return os.environ[MARK]


def inherited() -> dict[str, str]:
    """The settings a child process (a Ray worker) should start with: this process's choice
    (the child's own `apply` then reports them as set)."""
    return {k: os.environ[k] for k in SETTINGS if k in os.environ}


def recorded() -> dict[str, object]:
    """This process's choice for the run's kernel record (`dashrl.runtime.kernels.record`): the
    words of `apply` (which say how it was made: the load sample, the user's own settings, or torch
    loaded first) and the settings in effect ("" where none was chosen).

    >>> sorted(recorded())
    ['choice', 'env']
    """
    return {"choice": os.environ.get(MARK, ""), "env": {k: os.environ[k] for k in SETTINGS if k in os.environ}}
