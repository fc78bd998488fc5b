"""`ruff check` and `ruff format --check` pass over src and tests with the settings in pyproject.toml
(skipped where ruff is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_check_passes():
    proc = subprocess.run(["ruff", "check", "--no-cache", "src", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_format_leaves_the_tree_unchanged():
    proc = subprocess.run(
        ["ruff", "format", "--check", "--no-cache", "src", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_lints_every_source_file():
    """No source folder is skipped by ruff's default exclusions (a folder named `dist/` or `build/` would be)."""
    proc = subprocess.run(["ruff", "check", "--show-files", "src"], cwd=ROOT, capture_output=True, text=True)
    linted = {Path(line.strip()).resolve() for line in proc.stdout.splitlines() if line.strip().endswith(".py")}
    sources = {p.resolve() for p in (ROOT / "src").rglob("*.py")}
    assert sources - linted == set(), sorted(str(p) for p in sources - linted)
    assert any("distributed" in p.parts for p in linted)
