"""Start-up warm-up: it runs the grader and the sampler once before step 1, is logged as
time/startup_s in the first row only, and changes nothing in the run."""

from __future__ import annotations

import copy

import torch

from conftest import tiny_config as config

import dashrl.rollout.warmup as warmup
from dashrl.train.loop import train
from dashrl.train.metrics import read_metrics


def test_warm_up_changes_nothing_and_is_logged_once(tmp_path, tiny_lm, monkeypatch):
    model, tok = tiny_lm
    calls: list[tuple[int, int]] = []
    real = warmup.warm_sampler

    def spy(sampler, prompts, params):
        calls.append((len(prompts[: params.batch_size]), min(warmup.WARM_TOKENS, params.max_new_tokens)))
        return real(sampler, prompts, params)

    monkeypatch.setattr(warmup, "warm_sampler", spy)
    cfg = config(tmp_path, task={"name": "arithmetic"})
    warm_model, cold_model = copy.deepcopy(model), copy.deepcopy(model)
    warm = train(cfg, warm_model, tok)
    assert calls == [(16, 4)]  # batch_size 16 of M x G = 16 prompts, 4 new tokens
    rows = read_metrics(warm.run_dir / "metrics.jsonl")
    for key in ("time/startup_s", "time/warmup_s"):  # the warm-up is a part of the start-up, in the first row only
        assert rows[0][key] > 0 and all(key not in r for r in rows[1:])
    assert rows[0]["time/warmup_s"] < rows[0]["time/startup_s"]

    monkeypatch.setattr(warmup, "warm_up", lambda host, task: 0.0)
    cold = train(config(tmp_path, task={"name": "arithmetic"}, run={"name": "cold"}), cold_model, tok)
    for r, c in zip(rows, read_metrics(cold.run_dir / "metrics.jsonl")):
        assert r["reward/mean"] == c["reward/mean"] and r["loss"] == c["loss"]
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), warm_model.parameters()))  # it trained
    for (n, p), q in zip(warm_model.state_dict().items(), cold_model.state_dict().values()):
        assert torch.equal(p, q), n


def test_grader_warm_up_skips_user_functions_and_code():
    from dashrl.data import Example
    from dashrl.data.tasks import Task

    seen: list[str] = []
    task = Task(
        name="t",
        get=lambda i: Example(id="0", problem="p", answer="1"),
        size=None,
        reward=lambda ex, c: seen.append(c) or 0.0,
    )
    warmup.warm_grader(task, task.get(0))
    assert seen == ["\\boxed{1/2}"]  # the task's own check, once
    seen.clear()
    warmup.warm_grader(Task(name="t", get=task.get, size=None, reward=task.reward, funcs=(object(),)), task.get(0))
    assert seen == []  # user reward functions are never called on made-up answers
