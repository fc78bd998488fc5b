"""Multi-turn environments end to end on the tiny model: a run whose trajectories alternate model and
environment turns; the trainer's logprobs on the model's tokens equal the sampler's; an environment's
tokens get no gradient and a trajectory's loss is the sum over its model segments; the sample log
keeps the turns."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config as config

from dashrl.algo import LossInputs, Norm, make_loss
from dashrl.data import Example
from dashrl.data.tasks import Task
from dashrl.env.loading import EnvSpec
from dashrl.rollout.samples import Sample
from dashrl.train.learner import collate
from dashrl.train.logprobs import completion_logprobs, packed_logprobs, shared_prompt_logprobs
from dashrl.train.loop import train
from dashrl.train.metrics import read_metrics


class Nudge:
    """A text environment: after the model's first turn it says "More a." once; the reward is the
    share of 'a' in the last turn."""

    def reset(self, **row):
        self.said = 0
        return "Answer twice."

    def env_response(self, messages):
        self.last = messages[-1]["content"]
        if self.said:
            return None
        self.said = 1
        return "More a."

    def get_reward(self) -> float:
        last = getattr(self, "last", "")  # a first turn cut at max_new_tokens ends the trajectory unanswered
        return last.count("a") / max(len(last), 1)


def stopping(tiny_lm):
    """The tiny model stopping often: a few letters end a turn as EOS does (turns of a few tokens)."""
    model, tok = tiny_lm
    model.generation_config.eos_token_id = [tok.eos_token_id, *tok.convert_tokens_to_ids(list("abcdefghij"))]
    return model, tok


def task(env=None) -> Task:
    def get(i: int) -> Example:
        return Example(id=str(i % 4), problem=f"Say a {i % 4}", answer="a")

    return Task(name="letters", get=get, size=None, reward=lambda ex, text: 0.0, env=env)


def test_a_multi_turn_run_masks_env_tokens_and_logs_turns(tmp_path, tiny_lm):
    model, tok = stopping(tiny_lm)
    evals = {"every": 2, "datasets": "arithmetic", "limit": 2, "max_new_tokens": 8, "batch_size": 4}
    cfg = config(tmp_path, env={"max_turns": 3}, sampler={"max_new_tokens": 24}, eval=evals)
    res = train(cfg, model, tok, task=task(EnvSpec(Nudge)))
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["eval/arithmetic/tool_calls"] == 0.0  # evaluated with the environment (it has no tools)
    for r in rows:
        assert 1.0 < r["env/turns"] <= 2.0 and r["gen/env_tokens"] > 0 and "reward/Nudge" in r
        assert r["env/finish/stop"] + r.get("env/finish/length", 0.0) == 1.0
    ro = res.source.rollout(res.source.task.batch(5, 4), seed=3)
    s = next(x for x in ro.samples if len(x.info["turns"]) == 3)
    env_tokens = len(s.mask) - sum(s.mask)
    assert s.num_tokens == sum(s.mask) and s.env_tokens == env_tokens > 0
    assert ro.metrics["gen/mean_tokens"] == sum(x.num_tokens for x in ro.samples) / len(ro.samples)
    assert ro.metrics["gen/env_tokens"] == sum(x.env_tokens for x in ro.samples) / len(ro.samples)
    assert [t["role"] for t in s.info["turns"]] == ["assistant", "user", "assistant"]
    assert s.reward == pytest.approx(s.info["rewards"]["Nudge"])
    logged = [json.loads(line) for line in (res.run_dir / "samples.jsonl").read_text().splitlines()]
    turns = logged[0]["completions"][0]["turns"]
    assert [(t["role"], t["trained"]) for t in turns] == [("assistant", True), ("user", False), ("assistant", True)]
    assert turns[1]["text"] == "More a."


def test_trainer_logprobs_equal_the_samplers_on_model_tokens(tmp_path, tiny_lm):
    model, tok = stopping(tiny_lm)
    cfg = config(tmp_path, train={"steps": 1, "lr": 1e-12}, sampler={"max_new_tokens": 24})
    res = train(cfg, model, tok, task=task(EnvSpec(Nudge)))
    tr, src = res.learner, res.source
    ro = src.rollout(src.task.batch(5, 4), seed=3)
    mb = collate(ro.samples, tr.pad_id)
    assert (mb.loss_mask.sum(1) < mb.attention_mask[:, mb.prompt_len :].sum(1)).any()  # env tokens masked out
    for fn in (completion_logprobs, shared_prompt_logprobs, packed_logprobs):
        for chunk in (0, 5):
            with torch.no_grad():
                lp = fn(model, mb, temperature=tr.cfg.sampler.temperature, chunk=chunk)
            assert torch.allclose(lp * mb.loss_mask, mb.old_logprobs, atol=1e-4), (fn.__name__, chunk)
            assert (lp[mb.loss_mask == 0] == 0).all()


def segments(s: Sample) -> list[Sample]:
    """A trajectory cut at its model segments: each a sample whose prompt is everything before it."""
    out, i, mask = [], 0, s.mask
    while i < len(mask):
        j = i
        while j < len(mask) and mask[j] == mask[i]:
            j += 1
        if mask[i]:
            ids = s.completion_ids
            out.append(Sample(s.prompt_ids + ids[:i], ids[i:j], s.logprobs[i:j], s.reward, s.advantage, 0, "stop"))
        i = j
    return out


def trajectory(tok, env_text: str) -> Sample:
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    a, e, b = enc("ab c"), enc(env_text), enc("dd e")
    ids = a + e + b
    return Sample(enc("<user>q\n<assistant>"), ids, [-1.0] * len(ids), 1.0, 0.7, 0, "stop",
                  mask=[1] * len(a) + [0] * len(e) + [1] * len(b))  # fmt: skip


@pytest.mark.parametrize("fn", [completion_logprobs, packed_logprobs])
def test_env_tokens_get_no_gradient_and_the_loss_is_the_sum_of_model_segments(tiny_lm, fn):
    model, tok = tiny_lm
    loss_fn = make_loss("ppo_clip", aggregation="token-mean", clip_eps=0.2)
    norm = Norm(num_seqs=1, num_tokens=8.0, max_len=16)

    def loss_of(samples):
        mb = collate(samples, 0)
        lp = fn(model, mb, temperature=0.7)
        lp.retain_grad()
        out = loss_fn(LossInputs(lp, mb.old_logprobs, mb.advantages, mb.loss_mask, norm))
        loss = out[0] if isinstance(out, tuple) else out.loss
        loss.backward()
        return loss, lp.grad, mb

    s = trajectory(tok, "\n<tool>42\n<assistant>")
    loss, grad, mb = loss_of([s])
    env = torch.tensor(s.mask) == 0
    assert (grad[0, : len(s.mask)][env] == 0).all() and (grad[0, : len(s.mask)][~env] != 0).all()
    parts = segments(s)
    assert len(parts) == 2
    total = sum(loss_of([p])[0] for p in parts)
    assert torch.allclose(loss, total, atol=1e-6)
    # another tool answer: the later model tokens see another context, the answer itself still trains nothing
    other, grad2, _ = loss_of([trajectory(tok, "\n<tool>17\n<assistant>")])
    assert not torch.allclose(loss, other)
    assert (grad2[0, : len(s.mask)][env] == 0).all()


@pytest.mark.parametrize("method", ["reset", "get_reward"])
def test_an_environment_that_raises_stops_the_run_in_one_line(tmp_path, tiny_lm, method):
    from dashrl.train.loop import RunError

    class Broken:
        def reset(self, **row):
            if method == "reset":
                raise KeyError("level")

        def get_reward(self) -> float:
            raise ZeroDivisionError("no turns")

    model, tok = tiny_lm
    with pytest.raises(RunError) as e:
        train(config(tmp_path), model, tok, task=task(EnvSpec(Broken)))
    msg = str(e.value)
    assert msg.startswith(f"environment Broken.{method} raised ") and "\n" not in msg
    assert "(record 0)" in msg or "(records 0, 1, 2, 3)" in msg
    assert "at step 1; no checkpoint was saved yet" in msg
