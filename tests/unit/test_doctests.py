"""The examples in the light modules' docstrings run, and give what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dashrl.algo.advantages",
    "dashrl.algo.losses",
    "dashrl.rollout.samples",
    "dashrl.totals",
    "dashrl.io",
    "dashrl.train.batching",
    "dashrl.train.trainer",
    "dashrl.dist.units",
    "dashrl.dist.actors",
    "dashrl.dist.store",
    "dashrl.rewards.math_grading",
    "dashrl.stats",
    "dashrl.study.presets",
    "dashrl.study.arms",
    "dashrl.study.findings",
    "dashrl.study.tables",
    "dashrl.rewards.funcs",
    "dashrl.rewards.integer",
    "dashrl.data.tasks",
    "dashrl.data.prompts",
    "dashrl.train.sample_log",
    "dashrl.train.api",
    "dashrl.train.metrics",
    "dashrl.train.optim",
    "dashrl.bench_runs",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples in {name} failed"
