"""The only place where untrusted (model-written) code runs. Every limit is written here.

`run_tests(program, tests)` runs `program` and then the assertion script `tests` in a fresh
Python process and reports how many checks passed. `run_many` runs many such jobs at once
through a bounded thread pool (each thread only waits on its own child process).

Limits, all modes (`Limits` holds the numbers):
  - wall clock: `timeout` seconds (default 10), then the whole process group is SIGKILLed;
  - CPU time: RLIMIT_CPU = ceil(timeout) + 1 seconds;
  - memory: RLIMIT_AS = `memory_mb` (default 1024 MiB of address space);
  - files: RLIMIT_FSIZE = `file_size_mb` (default 16 MiB per written file, stdout/stderr included;
    past it the kernel kills the program with SIGXFSZ), RLIMIT_NOFILE = 64, RLIMIT_CORE = 0;
  - processes: RLIMIT_NPROC = `max_processes` (default 32, threads count) for the sandbox uid;
  - output: stdout and stderr go to anonymous temp files; at most `max_output_bytes` (64 KiB) of
    each is read back;
  - environment: not inherited; only PATH, LANG, HOME, TMPDIR and 1-thread BLAS settings;
    the interpreter runs with `-I -B` (isolated: ignores PYTHON* variables and user site);
  - working directory: a fresh `mkdtemp` directory, deleted afterwards;
  - stdin is empty (/dev/null); the child gets its own session and process group.

Isolation mode "namespaces" (used when we run as root on Linux with util-linux `unshare` and
`setpriv`, probed once per process, see `isolation_mode`):
  - `unshare --net --mount --pid --fork --kill-child --mount-proc`: no network (a new network
    namespace with no interfaces), a private pid namespace (the program cannot see or signal any
    outside process, and when its init dies every process inside dies, even ones that called
    setsid), a private mount table in which /tmp, /var/tmp and /dev/shm are fresh 16 MiB tmpfs
    mounts that vanish with the sandbox;
  - `setpriv` drops to a random unprivileged uid/gid (2**20 + up to 2**20, no groups) with
    no_new_privs, so the program cannot write files it does not own and RLIMIT_NPROC applies
    (root ignores RLIMIT_NPROC, which is why we never run untrusted code as root);
  - if the interpreter lives under a directory other users cannot enter (e.g. /root/.pyenv),
    the child keeps one capability, CAP_DAC_READ_SEARCH, so it can read (never write) the
    interpreter and its libraries. Such a program can read any file; it cannot send it anywhere.

Isolation mode "rlimits" (any other user or OS): the same limits, plus an audit hook installed
before the program runs that refuses sockets, process creation, signals to other processes and
writes outside the working directory. Audit hooks are best effort (ctypes can get around them),
so prefer running the trainer as root or in a container when training on untrusted code.

In both modes the harness installs the audit hook (defence in depth; it does not block process
creation in "namespaces" mode, where the kernel limits it). Pass/fail is reported by the harness
on a private pipe with a per-run random nonce, so printing a fake result line does not work.
A program that exits early, is killed or times out has passed nothing.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from dashrl.rewards._harness import HARNESS


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed run (see the module docstring)."""

    timeout: float = 10.0  # wall-clock seconds before the process group is killed
    memory_mb: int = 1024  # RLIMIT_AS
    file_size_mb: int = 16  # RLIMIT_FSIZE
    max_processes: int = 32  # RLIMIT_NPROC for the sandbox uid (threads count)
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output_bytes: int = 64 * 1024  # stdout / stderr bytes kept


@dataclass(frozen=True)
class RunResult:
    """What happened to one program."""

    status: str  # "passed" | "failed" (some check failed or crashed) | "timeout" | "error" (sandbox)
    passed: int  # checks that passed
    total: int  # checks in the test script (0 if the harness never reported)
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


_SH_SETUP = (
    "for d in /tmp /var/tmp /dev/shm; do [ -d $d ] && mount -t tmpfs -o size=16m,mode=1777 "
    "tmpfs $d; done; u=$1; caps=$2; shift 2; "
    "exec setpriv --reuid=$u --regid=$u --clear-groups --no-new-privs --inh-caps=-all$caps "
    '--ambient-caps=-all$caps --bounding-set=-all$caps -- "$@"'
)


def _world_readable(path: str) -> bool:
    """Whether every directory above `path` is enterable and `path` readable by any user."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i]) or os.sep).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o004)


@functools.lru_cache(maxsize=None)  # the machine does not change while we run
def isolation_mode() -> str:
    """ "namespaces" when root + unshare + setpriv work here, else "rlimits".

    >>> isolation_mode() in ("namespaces", "rlimits")
    True
    """
    if sys.platform != "linux" or os.geteuid() != 0:
        return "rlimits"
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return "rlimits"
    probe = run_tests("x = 1", "assert x == 1", Limits(timeout=20.0), mode="namespaces")
    return "namespaces" if probe.status == "passed" else "rlimits"


def _set_limits(limits: Limits) -> None:
    """Applied in the child between fork and exec (only `resource` calls, no allocation-heavy work)."""
    import resource

    cpu = int(math.ceil(limits.timeout)) + 1
    for rlimit, value in (
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, limits.memory_mb * 2**20),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * 2**20),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
        (resource.RLIMIT_NPROC, limits.max_processes),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(rlimit, (value, value))


def _command(python: str, mode: str, uid: int) -> list[str]:
    harness = [python, "-I", "-B", "-c", HARNESS]
    if mode != "namespaces":
        return harness
    caps = "" if _world_readable(python) else ",+dac_read_search"
    return [
        "unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
        "--propagation", "private", "--", "/bin/sh", "-c", _SH_SETUP, "sh", str(uid), caps,
        *harness,
    ]  # fmt: skip


def _read_capped(handle, limit: int) -> str:
    handle.seek(0)
    return handle.read(limit).decode("utf-8", errors="replace")


def _read_pipe(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while sum(map(len, chunks)) < 65536:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks).decode("utf-8", errors="replace")


def _parse_report(report: str, nonce: str) -> tuple[int, int] | None:
    for line in reversed(report.splitlines()):
        fields = line.split()
        if len(fields) == 3 and fields[0] == nonce:
            return int(fields[1]), int(fields[2])
    return None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill everything the run started and wait until it is gone.

    In "namespaces" mode the pid namespace's init (unshare's child) is killed first: the kernel
    then kills every process in the namespace, even ones that left the process group, and
    unshare exits only once they are all gone. Then the whole process group gets SIGKILL.
    """
    for child in _children(proc.pid):
        try:
            os.kill(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
        pass


def _child_env(workdir: str, mode: str) -> dict[str, str]:
    """The child's whole environment (nothing is inherited): PATH, LANG, HOME, TMPDIR, 1-thread BLAS.

    >>> sorted(_child_env("/w", "rlimits"))
    ['HOME', 'LANG', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'PATH', 'TMPDIR']
    >>> _child_env("/w", "rlimits")["TMPDIR"], _child_env("/w", "namespaces")["TMPDIR"]
    ('/w', '/tmp')
    """
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": "/tmp" if mode == "namespaces" else workdir,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _harness_input(program: str, tests: str, nonce: str, fd: int, workdir: str, mode: str) -> bytes:
    """What the harness reads on stdin: the code, where to report (the nonce, the pipe's fd), its
    working directory, and whether its audit hook blocks process creation (all but "namespaces",
    where the kernel limits it)."""
    return json.dumps(
        {"program": program, "tests": tests, "nonce": nonce, "fd": fd,
         "workdir": workdir, "block_spawn": mode != "namespaces"}
    ).encode()  # fmt: skip


def run_tests(
    program: str,
    tests: str,
    limits: Limits = Limits(),
    *,
    python: str | None = None,
    mode: str | None = None,
) -> RunResult:
    """Run `program`, then the assertion script `tests`, in the sandbox.

    `python` is the interpreter (default: this one). `mode` forces an isolation mode.

    >>> run_tests("def f(x):\\n    return x + 1", "assert f(1) == 2").status
    'passed'
    """
    python = python or sys.executable
    mode = mode or isolation_mode()
    nonce = secrets.token_hex(16)
    uid = 2**20 + secrets.randbelow(2**20)
    workdir = tempfile.mkdtemp(prefix="dashrl-sandbox-")
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    returncode: int | None = None
    status = "error"
    try:
        if mode == "namespaces":
            os.chown(workdir, uid, uid)
        env = _child_env(workdir, mode)
        payload = _harness_input(program, tests, nonce, write_fd, workdir, mode)
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err:  # fmt: skip
            stdin.write(payload)
            stdin.seek(0)
            try:
                proc = subprocess.Popen(
                    _command(python, mode, uid), stdin=stdin, stdout=out, stderr=err,
                    cwd=workdir, env=env, pass_fds=(write_fd,), start_new_session=True,
                    preexec_fn=functools.partial(_set_limits, limits),
                )  # fmt: skip
            finally:
                os.close(write_fd)
            try:
                returncode = proc.wait(timeout=limits.timeout)
            except subprocess.TimeoutExpired:
                status = "timeout"
            _kill_group(proc)  # also reaps whatever the program left behind
            counts = _parse_report(_read_pipe(read_fd), nonce)
            stdout = _read_capped(out, limits.max_output_bytes)
            stderr = _read_capped(err, limits.max_output_bytes)
        passed, total = counts if counts else (0, 0)
        if status != "timeout":
            status = "passed" if counts and total > 0 and passed == total else "failed"
        return RunResult(status, passed, total, returncode, stdout, stderr,
                         time.monotonic() - start)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a sandbox failure is a 0 score, never a crash
        return RunResult("error", 0, 0, returncode, "", repr(exc), time.monotonic() - start)
    finally:
        os.close(read_fd)
        shutil.rmtree(workdir, ignore_errors=True)


def run_many(
    jobs: Sequence[tuple[str, str]],
    limits: Limits = Limits(),
    *,
    workers: int | None = None,
    python: str | None = None,
) -> list[RunResult]:
    """Run `(program, tests)` jobs in parallel, at most `workers` at once; results in job order.

    >>> [r.status for r in run_many([("x = 1", "assert x == 1"), ("x = 2", "assert x == 1")])]
    ['passed', 'failed']
    """
    if not jobs:
        return []
    mode = isolation_mode()
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], limits, python=python, mode=mode), jobs))


_PROGRAM = (
    "import traceback as _tb\n"
    "try:\n"
    "    exec(compile({code!r}, '<code>', 'exec'), {{'__name__': '__main__'}})\n"
    "except BaseException:\n"
    "    _tb.print_exc(limit=-1)\n"
)


def run_program(code: str, limits: Limits = Limits()) -> RunResult:
    """Run `code` alone in the sandbox (`run_tests` with no checks), its traceback printed to
    stderr if it raises: what the `python` tool (`dashrl.tools.python`) shows the model.

    >>> r = run_program("print(6 * 7)")
    >>> r.stdout, r.status
    ('42\\n', 'passed')
    >>> run_program("1 / 0").stderr.splitlines()[-1]
    'ZeroDivisionError: division by zero'
    """
    return run_tests(_PROGRAM.format(code=code), "pass", limits)
