"""The prompt selectors by name, standard library only: what `--select.name` accepts besides a
user's `path/to/file.py:Class` or `module:Class`, and where each one lives (imported when built).
"""

from __future__ import annotations

SELECTORS: dict[str, str] = {
    "uniform": "",  # no selector: the task's own order, exactly as without selection (the default)
    "greso": "dashrl.select.greso:Greso",  # GRESO's probabilistic skipping of zero-variance prompts
}
SELECTOR_PATHS = ("path/to/file.py:Class", "module:Class")  # what select.name takes besides the names above
