"""Light imports: the CLI, the reward functions, the eval command and the bench load without the
heavy stack (checked in a fresh interpreter, where nothing was imported before)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "modules, heavy",
    [
        ("dashrl.rewards", ("torch", "math_verify", "sympy", "numpy")),
        ("dashrl.cli.eval, dashrl.eval", ("torch", "transformers", "math_verify", "sympy", "numpy")),
        (
            "dashrl.cli, dashrl.cli.bench, dashrl.cli.tune, dashrl.bench.steps, dashrl.bench.sampling, "
            "dashrl.peers.trl_grpo, dashrl.cli.distill, dashrl.data.sft, dashrl.stats, "
            "dashrl.cli.study, dashrl.study.tables, dashrl.study.arms",
            ("torch", "transformers", "trl", "datasets"),
        ),
    ],
)
def test_import_is_light(modules, heavy):
    code = f"import sys, {modules}; bad = [m for m in {heavy!r} if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
