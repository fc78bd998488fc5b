"""End to end on a tiny random model: metrics, filtering, generate calls, learning."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config as config

from dashrl.data import Example
from dashrl.data.tasks import Task
from dashrl.train.loop import train
from dashrl.train.metrics import read_metrics
from dashrl.rollout.samples import LocalSource
from dashrl.train.learner import Learner

REQUIRED_KEYS = {
    "step",
    "reward/mean",
    "accuracy",
    "adv/abs_mean",
    "filter/kept_frac",
    "gen/mean_tokens",
    "gen/truncated_frac",
    "loss",
    "grad_norm",
    "lr",
    "time/sampling_s",
    "time/scoring_s",
    "time/backprop_s",
    "time/step_s",
    "tokens/sampled_per_s",
    "tokens/trained_per_s",
}


def letter_task(target: str = "a") -> Task:
    """Reward = share of completion characters equal to `target`: trivially learnable."""

    def get(i: int) -> Example:
        return Example(id=str(i % 4), problem=f"Say {target} {i % 4}", answer=target)

    def reward(ex: Example, text: str) -> float:
        return text.count(ex.answer) / max(len(text), 1)

    return Task(name="letters", get=get, size=None, reward=reward)


def test_run_leaves_metrics_config_and_checkpoint(tmp_path, tiny_lm):
    model, tok = tiny_lm
    res = train(config(tmp_path, algo={"beta": 0.05}), model, tok, task=letter_task())
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert REQUIRED_KEYS | {"kl"} <= set(r), REQUIRED_KEYS - set(r)
    from dashrl.config import load_config

    assert load_config(res.run_dir / "config.toml").algo.beta == 0.05
    from transformers import AutoModelForCausalLM

    latest = (res.run_dir / "checkpoints" / "latest").read_text().strip()
    reloaded = AutoModelForCausalLM.from_pretrained(res.run_dir / "checkpoints" / latest)
    for (n, p), q in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(p, q), n


def test_sampler_logprobs_match_trainer_forward(tmp_path, tiny_lm):
    """Positions and padding agree: on-policy ratios are 1 (fp32)."""
    from dashrl.train.learner import collate
    from dashrl.train.logprobs import completion_logprobs, packed_logprobs, shared_prompt_logprobs

    model, tok = tiny_lm
    res = train(config(tmp_path, train={"steps": 1, "lr": 1e-12}), model, tok, task=letter_task())
    tr, src = res.learner, res.source
    ro = src.rollout(src.task.batch(5, 4), seed=3)
    mb = collate(ro.samples, tr.pad_id)
    assert tr.cfg.sampler.temperature != 1.0  # the temperature convention is part of what is checked
    for fn in (completion_logprobs, shared_prompt_logprobs, packed_logprobs):  # every trainer pass
        for chunk in (0, 5):  # the model's own head; the chunked head
            with torch.no_grad():
                lp = fn(model, mb, temperature=tr.cfg.sampler.temperature, chunk=chunk)
            assert torch.allclose(lp * mb.loss_mask, mb.old_logprobs, atol=1e-4), (fn.__name__, chunk)


@pytest.mark.parametrize("mode", ["packed", "shared", "plain"])
def test_filtered_samples_never_reach_a_forward_pass(tmp_path, tiny_lm, mode, monkeypatch):
    model, tok = tiny_lm
    share_prompts = mode == "shared"

    def get(i):
        return Example(id=str(i), problem=f"p{i}", answer=str(i % 2))

    def reward(ex, text):  # even prompts: constant reward -> zero advantage -> filtered
        return 1.0 if ex.answer == "0" else float(len(text) % 2)

    prompt_rows, sample_rows, packed_tokens = [], [], []
    original = model.model.forward  # the trainer runs the decoder and applies the LM head itself

    def spy(*args, **kwargs):
        if torch.is_grad_enabled():  # training forward passes (sampling runs under no_grad)
            ids = kwargs["input_ids"]
            if mode == "packed":  # one row: prompts once, completions but their last token
                packed_tokens.append(ids.shape[1])
            elif share_prompts and kwargs.get("past_key_values") is None:  # a prompt pass (no cache yet)
                prompt_rows.append(ids.shape[0])
            else:  # the completions' pass
                sample_rows.append(ids.shape[0])
        return original(*args, **kwargs)

    model.model.forward = spy
    drawn = []
    real_rollout = LocalSource.rollout

    def record(self, *a, **k):
        ro = real_rollout(self, *a, **k)
        drawn.extend(ro.samples)
        return ro

    monkeypatch.setattr(LocalSource, "rollout", record)
    cfg = config(
        tmp_path,
        train={"steps": 1, "share_prompts": share_prompts, "packed": mode == "packed"},
        sampler={"max_new_tokens": 6},
    )
    res = train(cfg, model, tok, task=Task("t", get, None, reward))
    kept = [s for s in drawn if abs(s.advantage) > 0.01]
    assert kept and all(int(s.group) % 2 == 1 for s in kept)  # only odd prompts can vary
    assert len(kept) == round(res.rows[0]["filter/kept_frac"] * 16)
    if mode == "packed":
        prompts = {s.group: len(s.prompt_ids) for s in kept}
        assert sum(packed_tokens) == sum(prompts.values()) + sum(len(s.completion_ids) - 1 for s in kept)
    else:
        assert sum(sample_rows) == len(kept)
        assert sum(prompt_rows) == (
            len({s.group for s in kept}) if share_prompts else 0
        )  # one prompt pass per kept group


def test_all_filtered_step_is_skipped_without_forward(tmp_path, tiny_lm):
    model, tok = tiny_lm
    task = Task("flat", lambda i: Example(id=str(i), problem="x", answer="1"), None, lambda ex, t: 1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train(config(tmp_path), model, tok, task=task)
    assert [r.get("skipped") for r in res.rows] == ["all_filtered", "all_filtered"]
    assert res.trainer.forward_samples == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nonfinite_loss_skips_the_step(tmp_path, tiny_lm, monkeypatch):
    model, tok = tiny_lm
    from dashrl.train import learner as trainer_mod

    real_make = trainer_mod.make_loss

    def make_nan_loss(name, **hp):
        real = real_make(name, **hp)
        return lambda inputs: (real(inputs)[0] * float("nan"), real(inputs)[1])

    monkeypatch.setitem(trainer_mod.__dict__, "make_loss", make_nan_loss)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train(config(tmp_path, train={"steps": 1}), model, tok, task=letter_task())
    assert res.rows[0]["skipped"] == "nonfinite_loss"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "schedule, calls_per_step, opt_steps_per_cycle",
    [("dash", 1, 1), ("grpo", 4, 1), ("ppo_multi", 1, 2), ("ppo_mini", 1, 2)],
)
def test_generate_calls_and_optimizer_steps(tmp_path, tiny_lm, schedule, calls_per_step, opt_steps_per_cycle):
    model, tok = tiny_lm
    cfg = config(tmp_path, algo={"schedule": schedule, "ppo_k": 2}, train={"micro_batch_size": 4})
    res = train(cfg, model, tok, task=letter_task())
    # grpo: M=4 prompts, micro-batch of 4 samples = 1 prompt x G=4 -> 4 generate calls per step
    assert res.source.host.generate_calls == 2 * calls_per_step
    assert len(res.rows) == 2 * opt_steps_per_cycle


@pytest.mark.parametrize("name", ["dash", "dapo", "dr_grpo", "gspo", "rloo"])
def test_micro_batch_split_does_not_change_the_gradient(tmp_path, monkeypatch, name):
    """Gradient accumulation over 1 or 4 micro-batches gives the same gradient, for every loss, and so
    do 4 micro-batches joined into one packed pass (train.pass_tokens 0, the default)."""
    from conftest import make_tiny_model, make_tokenizer

    grads = []
    real_step = Learner.optimizer_step

    def spy(self, nonfinite):
        grads.append({n: p.grad.clone() for n, p in self.model.named_parameters() if p.grad is not None})
        return real_step(self, nonfinite)

    monkeypatch.setattr(Learner, "optimizer_step", spy)
    for mbs, pass_tokens in ((16, 1), (4, 1), (4, 0)):
        tok = make_tokenizer()
        model = make_tiny_model(len(tok))
        cfg = config(
            tmp_path / f"{mbs}-{pass_tokens}",
            train={"steps": 1, "micro_batch_size": mbs, "pass_tokens": pass_tokens},
            algo={"name": name, "filter_threshold": -1.0},
        )
        train(cfg, model, tok, task=letter_task())
    assert grads[0].keys() == grads[1].keys() == grads[2].keys() and grads[0]
    for other in grads[1:]:
        for k in grads[0]:
            assert torch.allclose(grads[0][k], other[k], atol=1e-7, rtol=1e-4), k


def test_reward_rises_on_a_learnable_task(tmp_path, tiny_lm):
    model, tok = tiny_lm
    cfg = config(
        tmp_path,
        algo={"prompts_per_step": 8, "group_size": 8},
        train={"steps": 25, "micro_batch_size": 64, "lr": 1e-2},
        sampler={"max_new_tokens": 4, "batch_size": 64},
    )
    res = train(cfg, model, tok, task=letter_task())
    rewards = [r["reward/mean"] for r in res.rows]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.3, rewards


def test_evaluation_inside_training_joins_the_metrics(tmp_path, tiny_lm):
    model, tok = tiny_lm
    cfg = config(
        tmp_path,
        train={"steps": 3},
        eval={"every": 2, "datasets": "arithmetic,gsm8k", "limit": 3, "max_new_tokens": 4},
    )
    res = train(cfg, model, tok, task=letter_task())
    has_eval = [("eval/arithmetic/accuracy" in r, "eval/gsm8k/accuracy" in r) for r in res.rows]
    assert has_eval == [(False, False), (True, True), (True, True)]  # every 2 steps and after the last
    for r in res.rows[1:]:
        assert 0.0 <= r["eval/gsm8k/accuracy"] <= 1.0 and 1 <= r["eval/gsm8k/mean_tokens"] <= 4


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_gradient_checkpointing_gives_the_unchecked_gradient(tmp_path, dtype):
    """Checkpointed blocks recompute their activations in backward: the same gradient, so the same
    step, as the plain pass (both runs take the plain per-sample pass, which checkpointing forces)."""
    from conftest import make_tiny_model, make_tokenizer

    runs = []
    for gc in (False, True):
        tok = make_tokenizer()
        model = make_tiny_model(len(tok))
        cfg = config(
            tmp_path / str(gc),
            model={"gradient_checkpointing": gc, "dtype": dtype},
            train={"steps": 1, "packed": False, "share_prompts": False},
        )
        res = train(cfg, model, tok, task=letter_task())
        runs.append((res.rows[0], {k: v.detach().clone() for k, v in res.learner.policy.module.state_dict().items()}))
    (plain, w_plain), (checked, w_checked) = runs
    assert plain.get("skipped") is None and plain["grad_norm"] > 0
    assert checked["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-5)
    assert checked["loss"] == pytest.approx(plain["loss"], rel=1e-5, abs=1e-7)
    start = make_tiny_model(len(make_tokenizer())).state_dict()
    moved = [k for k in w_plain if not torch.equal(w_plain[k], start[k])]
    assert moved  # the step changed weights, and changed them alike
    for k in w_plain:
        torch.testing.assert_close(w_checked[k], w_plain[k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_checkpoint_that_kept_the_counter_in_the_learner_state_resumes(tmp_path, tiny_lm):
    """Runs saved before the rollout source had a state of its own kept `generate_calls` in the
    learner's (then the `Trainer`'s) state: they resume, and the count goes on from there."""
    import copy

    from dashrl.train.checkpoint import STATE_FILE, latest_checkpoint, load_state

    model, tok = tiny_lm
    res = train(config(tmp_path, train={"steps": 1}), copy.deepcopy(model), tok, task=letter_task())
    ckpt = latest_checkpoint(res.run_dir)
    state = load_state(ckpt)
    assert state["source"] == {"generate_calls": 1}
    state["trainer"].update(state.pop("source"))  # the older layout
    torch.save(state, ckpt / STATE_FILE)
    res = train(config(tmp_path, train={"steps": 2}), copy.deepcopy(model), tok, task=letter_task())
    assert res.source.host.generate_calls == 2 and [r["step"] for r in res.rows] == [1, 2]
