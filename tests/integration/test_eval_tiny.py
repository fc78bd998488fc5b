"""evaluate() and `dashrl eval` end to end on the tiny random model: real prompts, real sampler,
real graders (math-verify and the sandbox). A random model scores ~0; we check the bookkeeping."""

import argparse
import json

import pytest

from dashrl.data.datasets import load_dataset
from dashrl.eval import evaluate
from dashrl.eval.command import add_arguments, run
from dashrl.rollout import SamplingParams, make_sampler


def test_evaluate_tiny_model(tiny_lm):
    model, tok = tiny_lm
    examples = load_dataset("math500", limit=3) + load_dataset("mbppplus", limit=1)
    sampler = make_sampler("hf", model=model, tokenizer=tok)
    params = SamplingParams(max_new_tokens=12, temperature=1.0, batch_size=8)
    report = evaluate(sampler, tok, examples, params=params, n=2, ks=(1, 2), seed=0, records=True)
    assert report["examples"] == 4 and report["samples"] == 8
    assert 0.0 <= report["accuracy"] <= report["pass_at_k"]["2"] <= 1.0
    assert 0 < report["mean_length"] <= 12
    assert 0.0 <= report["truncated"] <= 1.0
    assert set(report["by_subject"]) == {ex.meta["subject"] for ex in examples[:3]}
    assert [len(r["completions"]) for r in report["records"]] == [2, 2, 2, 2]
    again = evaluate(sampler, tok, examples, params=params, n=2, ks=(1, 2), seed=0, records=True)
    assert again["records"] == report["records"]  # same seed, same samples


def test_eval_command_tiny_model(tiny_lm, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("dashrl.models.load_model", lambda spec, **kw: tiny_lm)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "report.json"
    args = parser.parse_args(["--model", "tiny", "--dataset", "gsm8k", "--dataset", "amc23", "--limit", "2",
                              "--n", "2", "--k", "1,2", "--max-new-tokens", "8", "--out", str(out)])
    assert run(args) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"gsm8k", "amc23"}
    assert report["results"]["gsm8k"]["samples"] == 4
    assert report["settings"]["temperature"] == 1.0  # n > 1 samples by default
    assert "amc23" in capsys.readouterr().out
