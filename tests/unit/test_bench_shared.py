"""`python -m dashrl.bench.shared`: a bad policy is one line; end to end on a tiny model (slow:
three worker processes each load the model) it writes the table with every phase of every policy."""

from __future__ import annotations

import json

import pytest

from dashrl.bench.shared import main


def test_an_unknown_policy_is_one_line(capsys):
    assert main(["--policies", "today,spinny"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "dashrl bench_shared: --policies: unknown 'spinny'; valid: today, passive, dashrl, spinN (e.g. spin10000)"
    )


@pytest.mark.slow
def test_one_policy_end_to_end_on_a_tiny_model(model_dir, tmp_path, capsys):
    flags = ["--model.name", model_dir, "--model.dtype", "fp32", "--sampler.max_new_tokens", "4",
             "--algo.prompts_per_step", "2",
             "--algo.group_size", "2", "--train.micro_batch_size", "2"]  # fmt: skip
    assert (
        main(["--policies", "spin1000", "--repeats", "1", "--threads", "1", "--out", str(tmp_path / "s"), *flags]) == 0
    )
    payload = json.loads((tmp_path / "s" / "shared.json").read_text())
    r = payload["results"]["spin1000"]
    assert set(r["alone"]) == {"sampling", "backprop"} and len(r["pair"]) == 2
    assert r["choice"] == ["OpenMP as set (GOMP_SPINCOUNT=1000)"] * 3  # the policy reached every worker
    assert "| spin1000 | sampling |" in (tmp_path / "s" / "shared.md").read_text()
