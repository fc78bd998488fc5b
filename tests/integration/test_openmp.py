"""OpenMP settings (dashrl.runtime.openmp) are chosen on every entry point before torch loads, and the
run's log line names the choice: the command line and the Python API in a fresh interpreter
(an audit hook records the environment at the moment torch is imported), Ray's workers through
the cluster's runtime environment."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashrl.runtime import openmp

SRC = str(Path(__file__).resolve().parents[2] / "src")
SMALL = ["--sampler.max_new_tokens", "4", "--algo.prompts_per_step", "2", "--algo.group_size", "2",
         "--train.micro_batch_size", "2", "--model.dtype", "fp32", "--train.steps", "1"]  # fmt: skip
HOOK = (
    "import os, sys\n"
    "seen = []\n"
    "def hook(event, args):\n"
    "    if event == 'import' and args[0] == 'torch' and not seen:\n"
    "        seen.append({k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')})\n"
    "        print('AT TORCH IMPORT', seen[0], file=sys.stderr, flush=True)\n"
    "sys.addaudithook(hook)\n"
)


def fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (*openmp.SETTINGS, openmp.MARK, openmp.CHOSEN_BY)}
    return subprocess.run([sys.executable, "-c", HOOK + code], capture_output=True, text=True, timeout=300,
                          env={**base, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **env})  # fmt: skip


def chosen_at_torch_import(stderr: str) -> dict:
    line = next(line for line in stderr.splitlines() if line.startswith("AT TORCH IMPORT"))
    return ast.literal_eval(line.removeprefix("AT TORCH IMPORT "))


@pytest.mark.parametrize("entry", ["cli", "api"])
def test_every_entry_point_sets_the_wait_policy_before_torch_and_logs_it(entry, model_dir, tmp_path):
    flags = [*SMALL, "--model.name", model_dir, "--run.out_dir", str(tmp_path), "--run.name", "r"]
    if entry == "cli":
        code = f"from dashrl.cli import main\nraise SystemExit(main(['train', *{flags!r}]))\n"
    else:  # and the caller's environment is as it was after the run
        overrides = {flags[i][2:]: flags[i + 1] for i in range(0, len(flags), 2)}
        code = (f"import dashrl\nbefore = dict(os.environ)\ndashrl.train({overrides!r})\n"
                "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n")  # fmt: skip
    proc = fresh(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    at_import = chosen_at_torch_import(proc.stderr)
    assert at_import in (
        {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": str(openmp.SPIN)},
        {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
    )
    line = next(line for line in proc.stderr.splitlines() if line.startswith("[dashrl] run folder"))
    assert (
        f"OpenMP spin {openmp.SPIN} (other processes keep " in line or "OpenMP passive (other processes keep " in line
    )


def test_a_user_setting_is_kept_and_named(model_dir, tmp_path):
    flags = [*SMALL, "--model.name", model_dir, "--run.out_dir", str(tmp_path), "--run.name", "r"]
    proc = fresh(f"from dashrl.cli import main\nraise SystemExit(main(['train', *{flags!r}]))\n", GOMP_SPINCOUNT="500")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert chosen_at_torch_import(proc.stderr) == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "500"}
    assert "OpenMP as set (GOMP_SPINCOUNT=500))" in proc.stderr


def test_ray_workers_start_with_the_drivers_choice(monkeypatch):
    import ray

    from dashrl.config import load_config
    from dashrl.distributed import backend

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert backend.connect(load_config(overrides=["--dist.samplers", "1"]))
    assert seen["runtime_env"]["env_vars"]["GOMP_SPINCOUNT"] == "10000"
    assert "OMP_WAIT_POLICY" not in seen["runtime_env"]["env_vars"]


def test_apply_chooses_once_per_process_and_a_child_chooses_again(monkeypatch):
    for k in (*openmp.SETTINGS, openmp.MARK, openmp.CHOSEN_BY):
        monkeypatch.delenv(k, raising=False)
    first = openmp.apply()  # torch is loaded in this test process
    assert first == "OpenMP unchanged (torch was imported before dashrl could set it)"
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    assert openmp.apply() == first  # chosen already in this process
    proc = fresh(
        "from dashrl.runtime import openmp\nprint(openmp.apply())\n",
        **{openmp.MARK: first, openmp.CHOSEN_BY: str(os.getpid())},
    )
    assert proc.stdout.startswith((f"OpenMP spin {openmp.SPIN} (", "OpenMP passive")), proc.stderr


def test_other_busy_cores_counts_a_busy_process_and_not_itself():
    quiet = openmp.other_busy_cores(0.3)
    assert quiet is not None and 0.0 <= quiet <= len(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = openmp.other_busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.7  # the spinner keeps (about) one core busy


def test_in_a_container_with_a_cpu_quota_only_its_own_processes_count(tmp_path):
    """Under a cgroup CPU quota the host's /proc/stat is not this container's share: the
    container's usage counter is read instead (here a fake one that gains 1 CPU second)."""
    import threading

    (tmp_path / "cpu.max").write_text("200000 100000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 5000000\nuser_usec 1\n")
    later = threading.Timer(0.1, lambda: (tmp_path / "cpu.stat").write_text("usage_usec 6000000\nuser_usec 1\n"))
    later.start()
    busy = openmp.other_busy_cores(0.5, cgroup=tmp_path)
    later.join()
    assert busy is not None and 1.5 <= busy <= 2.05  # 1 CPU second over about half a second
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no quota: the machine's counters, not the cgroup's
    later = threading.Timer(0.1, lambda: (tmp_path / "cpu.stat").write_text("usage_usec 106000000\nuser_usec 1\n"))
    later.start()
    busy = openmp.other_busy_cores(0.5, cgroup=tmp_path)
    later.join()
    assert busy is not None and busy <= len(os.sched_getaffinity(0))  # the fake 100 CPU seconds would give ~200
