"""Hostile programs: each must be contained, score 0.0 within its time bound, and leave the
test process (the "trainer") alive with nothing left running."""

import os
import socket
import time
import uuid

import pytest

from dashrl.rewards import code_reward, code_rewards, extract_code
from dashrl.rewards.sandbox import Limits, isolation_mode, run_many, run_tests

FAST = Limits(timeout=2.0)
BOUND = 2.0 + 5.0  # timeout + generous slack for process start and cleanup on a busy machine
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"


def _sandbox_processes() -> list[int]:
    """Pids of processes owned by a sandbox uid (>= 2**20) that are still alive."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    uid_line = next(line for line in f if line.startswith("Uid:"))
            except (OSError, StopIteration):
                continue
            if int(uid_line.split()[1]) >= 2**20:
                pids.append(int(entry))
    return pids


def _hostile(program: str, tests: str = "assert True", limits: Limits = FAST):
    start = time.monotonic()
    result = run_tests(program, tests, limits)
    elapsed = time.monotonic() - start
    assert result.status != "passed", result
    assert elapsed < limits.timeout + BOUND - FAST.timeout, elapsed
    time.sleep(0.05)
    assert _sandbox_processes() == []
    return result


def test_good_program_passes():
    assert code_reward(f"```python\n{ADD}```", ADD_TESTS) == 1.0
    assert run_tests(ADD, ADD_TESTS).status == "passed"


def test_wrong_program_fails_and_partial_credit_counts_asserts():
    wrong = "def add(a, b):\n    return a + b if a > 0 else 99\n"
    assert code_reward(wrong, ADD_TESTS) == 0.0
    assert code_reward(wrong, ADD_TESTS, partial=True) == 0.5
    result = run_tests(wrong, ADD_TESTS)
    assert (result.passed, result.total) == (1, 2)


def test_setup_failure_fails_later_checks():
    tests = "assert add(1, 2) == 3\nimport no_such_module\nassert add(2, 2) == 4\n"
    assert code_reward(ADD, tests, partial=True) == 0.5


def test_syntax_error_and_crash_score_zero():
    assert code_reward("def add(a, b) return a+b", ADD_TESTS) == 0.0
    assert code_reward("raise SystemExit(0)", ADD_TESTS) == 0.0
    assert code_reward(ADD, "this is not python") == 0.0


def test_infinite_loop():
    result = _hostile("while True:\n    pass\n")
    assert result.status == "timeout"


def test_sleep_past_timeout():
    result = _hostile("import time\ntime.sleep(60)\n")
    assert result.status == "timeout"


def test_fork_bomb():
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    before = len([p for p in os.listdir("/proc") if p.isdigit()])
    _hostile(program)
    after = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert after < before + 10


def test_setsid_escapee_is_killed():
    program = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(120)\n    os._exit(0)\ntime.sleep(120)\n"
    )
    _hostile(program)


def test_memory_bomb():
    # A wall clock long enough that only the memory limit can end it, even on a loaded machine (at 2 s,
    # zeroing 1 GiB there sometimes ran out the clock first): MemoryError under RLIMIT_AS, so "failed";
    # without the limit it would run to the timeout ("timeout").
    result = _hostile(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n", limits=Limits(timeout=10.0)
    )
    assert result.status == "failed"


def test_writing_outside_its_directory(tmp_path):
    name = f"dashrl-evil-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", str(tmp_path / name), f"/var/tmp/{name}"]
    for target in targets:
        program = f"open({target!r}, 'w').write('pwned')\n" + ADD
        assert code_reward(program, ADD_TESTS, timeout=FAST.timeout) == 0.0
        assert not os.path.exists(target)
    program = f"import os\nos.rename('.', {str(tmp_path / name)!r})\n" + ADD
    assert code_reward(program, ADD_TESTS, timeout=FAST.timeout) == 0.0
    assert os.listdir(tmp_path) == []


def test_writing_inside_its_directory_is_allowed():
    program = "open('scratch.txt', 'w').write('ok')\nx = open('scratch.txt').read()\n"
    assert code_reward(program, "assert x == 'ok'") == 1.0


def test_network_connection():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    program = (
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'leak')\n" + ADD
    )
    try:
        _hostile(program, ADD_TESTS)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_killing_its_parent():
    me = os.getpid()
    program = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {me}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except Exception:\n"
        "        pass\n"
        f"os.kill({me}, signal.SIGKILL)\n"
    )
    _hostile(program)
    program = f"import os, signal\nos.killpg(os.getpgid({me}), signal.SIGKILL)\n"
    _hostile(program)
    assert os.getpid() == me  # still here


def test_output_flood():
    start = time.monotonic()
    result = _hostile("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert len(result.stdout) <= FAST.max_output_bytes
    assert time.monotonic() - start < BOUND


def test_reading_parent_environment(monkeypatch):
    monkeypatch.setenv("DASHRL_SECRET_FOR_TEST", "s3cret")
    program = (
        "import os\n"
        "leaked = os.environ.get('DASHRL_SECRET_FOR_TEST')\n"
        "try:\n"
        "    leaked = leaked or ('s3cret' if b's3cret' in "
        f"open('/proc/{os.getpid()}/environ', 'rb').read() else None)\n"
        "except OSError:\n"
        "    pass\n"
    )
    assert code_reward(program, "assert leaked == 's3cret'") == 0.0
    assert code_reward(program, "assert leaked is None") == 1.0


def test_forged_result_line_is_ignored():
    program = "import os\nprint('0' * 32, 1, 1)\nos._exit(0)\n"
    result = _hostile(program)
    assert (result.passed, result.total) == (0, 0)


def test_parallel_pool_mixes_good_and_hostile():
    jobs = [
        (ADD, ADD_TESTS),
        ("while True:\n    pass\n", "assert True"),
        (ADD, "assert add(1, 1) == 3"),
        ("import os\nos.kill(os.getppid(), 9)\n" + ADD, ADD_TESTS),
        (ADD, ADD_TESTS),
    ]
    start = time.monotonic()
    statuses = [r.status for r in run_many(jobs, FAST, workers=3)]
    assert time.monotonic() - start < 2 * BOUND
    assert statuses[0] == statuses[4] == "passed"
    assert statuses[1] == "timeout"
    assert statuses[2] == "failed"
    assert statuses[3] != "passed" or isolation_mode() == "namespaces"  # parent is invisible there


def test_code_rewards_batch_and_validation():
    assert code_rewards([ADD, "x = 1"], [ADD_TESTS, ADD_TESTS]) == [1.0, 0.0]
    assert code_rewards([], []) == []
    with pytest.raises(ValueError):
        code_rewards([ADD], [])


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("```python\nx = 1\n```\ntext\n```python\nx = 2\n```", "x = 2\n"),
        ("```py\nx = 3\n```", "x = 3\n"),
        ("```\nx = 4\n```", "x = 4\n"),
        ("Sure!\n```python\nx = 5\n", "x = 5\n"),  # cut at max_new_tokens
        ("x = 6", "x = 6"),
    ],
)
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected
