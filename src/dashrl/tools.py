"""Built-in tools a run can give the model (`--env.tools dashrl.tools:python`), plain functions in
TRL's convention (type hints, a docstring with Args).

`python` runs the model's code through the one sandbox of `dashrl.rewards.sandbox`, with the
limits the code reward has (time, memory, processes, files, no network; see that module).
"""

from __future__ import annotations

from dashrl.rewards.sandbox import Limits, run_program

PYTHON_LIMITS = Limits(timeout=5.0)
MAX_CHARS = 2000  # of the answer the model reads back


def python(code: str) -> str:
    """Run Python code and return what it printed, or its error.

    Args:
        code: a Python program; print what you want to see.

    >>> python("print(12345 * 6789)")
    '83810205'
    >>> python("1 / 0")
    'ZeroDivisionError: division by zero'
    """
    r = run_program(code, PYTHON_LIMITS)
    if r.status == "timeout":
        return f"Error: the program ran past {PYTHON_LIMITS.timeout:g} s and was stopped"
    if r.status == "error":
        return f"Error: the sandbox failed: {r.stderr.strip()[:200]}"
    out = r.stdout.strip()
    if r.stderr.strip():
        err = r.stderr.strip().splitlines()[-1] if "Traceback" in r.stderr else r.stderr.strip()
        out = f"{out}\n{err}".strip()
    if not out and r.returncode not in (0, None):
        out = f"Error: the program was killed (status {r.returncode})"
    return out[:MAX_CHARS] or "(no output)"
