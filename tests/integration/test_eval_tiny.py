"""evaluate() and `dashrl eval` end to end on the tiny random model: real prompts, real sampler,
real graders (math-verify and the sandbox). A random model scores ~0; we check the bookkeeping."""

import argparse
import json

from dashrl.data.datasets import load_dataset
from dashrl.eval import evaluate
from dashrl.cli.eval import add_arguments, run
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
    args = parser.parse_args(
        [
            "--model",
            "tiny",
            "--dataset",
            "gsm8k",
            "--dataset",
            "amc23",
            "--limit",
            "2",
            "--n",
            "2",
            "--k",
            "1,2",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
        ]
    )
    assert run(args) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"gsm8k", "amc23"}
    assert report["results"]["gsm8k"]["samples"] == 4
    assert report["settings"]["temperature"] == 1.0  # n > 1 samples by default
    assert "amc23" in capsys.readouterr().out


def test_eval_of_a_checkpoint_reproduces_the_in_training_evaluation(tiny_lm, tmp_path):
    """`dashrl eval --config RUN/config.toml --model.name CHECKPOINT --dataset arithmetic` is the
    evaluation the run logged at that step: same problems, same greedy tokens, same grades."""
    from conftest import tiny_config
    from test_resume import letter_task

    from dashrl.cli import main
    from dashrl.train.checkpoint import step_dir
    from dashrl.train.loop import train
    from dashrl.train.metrics import read_metrics

    model, tok = tiny_lm
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = tiny_config(tmp_path, train={"steps": 3, "lr": 3e-2}, run={"loggers": ""},
                      eval={"every": 3, "datasets": "arithmetic", "limit": 6, "max_new_tokens": 7})  # fmt: skip
    run = train(cfg, model, tok, task=letter_task()).run_dir  # letters: rewards vary, the weights move
    logged = read_metrics(run / "metrics.jsonl")[-1]
    out = tmp_path / "r.json"
    assert main(["eval", "--config", str(run / "config.toml"), "--model.name", str(step_dir(run, 3)),
                 "--dataset", "arithmetic", "--records", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())["results"]["arithmetic"]
    assert result["examples"] == 6
    assert result["accuracy"] == logged["eval/arithmetic/accuracy"]
    assert result["mean_length"] == logged["eval/arithmetic/mean_tokens"]
    # the base model decodes other tokens: the checkpoint's weights, not the base's, were evaluated
    assert main(["eval", "--config", str(run / "config.toml"), "--model.name", str(tmp_path / "tiny"),
                 "--dataset", "arithmetic", "--records", "--out", str(out)]) == 0  # fmt: skip
    base = json.loads(out.read_text())["results"]["arithmetic"]
    assert [r["completions"] for r in base["records"]] != [r["completions"] for r in result["records"]]
