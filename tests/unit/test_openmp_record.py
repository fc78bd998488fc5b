"""The OpenMP choice (dashrl.runtime.openmp) is part of the run's record and leaves the caller's
environment as it found it: `kernels.record()` (kept in each checkpoint) names the choice and how
it was made, and `dashrl.train` gives back `os.environ` as it was, whether it returns or raises."""

from __future__ import annotations

import json
import os

import pytest

import dashrl
from dashrl.runtime import kernels, openmp
from dashrl.train.loop import RunError

SMALL = {"train.steps": 1, "algo.prompts_per_step": 2, "algo.group_size": 2, "sampler.max_new_tokens": 4,
         "train.micro_batch_size": 4, "model.dtype": "fp32", "run.quiet": True}  # fmt: skip
ROWS = [{"prompt": "Say hi"}, {"prompt": "Say yo"}]
SPIN = {"GOMP_SPINCOUNT": "10000", openmp.MARK: "OpenMP spin 10000 (other processes keep 0.2 cores busy)"}


@pytest.fixture
def clean_env(monkeypatch):
    """No OpenMP choice made yet in this process, a sentinel the run must not disturb."""
    for k in (*openmp.SETTINGS, openmp.MARK, openmp.CHOSEN_BY):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DASHRL_TEST_SENTINEL", "kept")


def _info(run_dir) -> dict:
    (ckpt,) = sorted((run_dir / "checkpoints").glob("step-*"))
    return json.loads((ckpt / "dashrl_state.json").read_text())


def test_record_holds_the_choice_and_its_settings(monkeypatch, clean_env):
    monkeypatch.setenv(openmp.MARK, "OpenMP passive (other processes keep 1.6 cores busy)")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert kernels.record()["openmp"] == {
        "choice": "OpenMP passive (other processes keep 1.6 cores busy)",
        "env": {"OMP_WAIT_POLICY": "PASSIVE"},
    }


def test_a_users_own_setting_is_recorded_and_left_as_it_was(tmp_path, tiny_lm, monkeypatch, clean_env):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the user's own: kept, named, still there after
    before = dict(os.environ)
    model, tok = tiny_lm
    result = dashrl.train({**SMALL, "run.out_dir": str(tmp_path), "run.name": "r"}, dataset=ROWS,
                          reward_funcs=[lambda completions, **kw: [1.0] * len(completions)],
                          model=model, tokenizer=tok)  # fmt: skip
    assert dict(os.environ) == before
    assert _info(result.run_dir)["kernels"]["openmp"] == {
        "choice": "OpenMP as set (OMP_WAIT_POLICY=PASSIVE)",
        "env": {"OMP_WAIT_POLICY": "PASSIVE"},
    }


def test_the_runs_own_choice_is_set_during_the_run_and_gone_after(tmp_path, tiny_lm, monkeypatch, clean_env):
    # torch is loaded in this process, so `choose` would leave OpenMP unchanged: stand in for a fresh one
    monkeypatch.setattr(openmp, "choose", lambda environ, busy, torch_loaded: dict(SPIN))
    during = []

    def spy(completions, **kwargs):
        during.append(os.environ.get("GOMP_SPINCOUNT"))
        return [1.0] * len(completions)

    before = dict(os.environ)
    model, tok = tiny_lm
    result = dashrl.train({**SMALL, "run.out_dir": str(tmp_path), "run.name": "r"}, dataset=ROWS,
                          reward_funcs=[spy], model=model, tokenizer=tok)  # fmt: skip
    assert set(during) == {"10000"}  # children started during the run inherit the choice
    assert dict(os.environ) == before
    assert _info(result.run_dir)["kernels"]["openmp"] == {
        "choice": SPIN[openmp.MARK],
        "env": {"GOMP_SPINCOUNT": "10000"},
    }


def test_the_environment_comes_back_when_the_run_raises(tmp_path, tiny_lm, monkeypatch, clean_env):
    monkeypatch.setattr(openmp, "choose", lambda environ, busy, torch_loaded: dict(SPIN))

    def broken(completions, **kwargs):
        raise ValueError("no")

    before = dict(os.environ)
    model, tok = tiny_lm
    with pytest.raises(RunError, match="broken"):
        dashrl.train({**SMALL, "run.out_dir": str(tmp_path), "run.name": "r"}, dataset=ROWS,
                     reward_funcs=[broken], model=model, tokenizer=tok)  # fmt: skip
    assert dict(os.environ) == before
