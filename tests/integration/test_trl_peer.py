"""TRL's GRPOTrainer as a bench peer: same prompts in the same order, our reward, stepped one
optimizer step at a time (parked in between), its generation batch size honoured."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("trl")

from dashrl.config import load_config  # noqa: E402
from dashrl.data import Example  # noqa: E402
from dashrl.data.prompts import build_prompt  # noqa: E402
from dashrl.data.tasks import TASKS, Task  # noqa: E402
from dashrl.peers.trl_grpo import TRLPeer, generation_batch_candidates, probe_generation_batch_size  # noqa: E402

M, G = 2, 4


def _parity_reward(ex: Example, completion: str) -> float:
    return float((int(ex.answer) + len(completion)) % 2)  # depends on both: misaligned examples would show


def _probe_task(cfg, seed):
    return Task("probe", lambda i: Example(id=str(i), problem=f"Say {i}.", answer=str(i)), None, _parity_reward)


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.setitem(TASKS, "probe", _probe_task)
    return load_config(None, ["--task.name", "probe", "--algo.prompts_per_step", str(M), "--algo.group_size", str(G),
                              "--train.micro_batch_size", "4", "--sampler.max_new_tokens", "6",
                              "--sampler.temperature", "1.0",
                              "--model.dtype", "fp32", "--train.warmup_steps", "0"])  # fmt: skip


def test_candidates_hold_whole_groups_within_one_step():
    assert generation_batch_candidates(64, 8, 8) == [8, 16, 32, 64]
    assert generation_batch_candidates(48, 4, 8) == [8, 16, 24, 48]
    assert generation_batch_candidates(8, 8, 4) == [8]


def test_peer_uses_our_prompts_and_reward_one_step_at_a_time(cfg, tiny_lm, tmp_path):
    model, tok = tiny_lm
    peer = TRLPeer(cfg, model, tok, steps=2, generation_batch_size=G, out_dir=str(tmp_path))
    calls = []
    timed_generate = peer.trainer._generate

    def spy(prompts):
        out = timed_generate(prompts)
        calls.append((out[0], out[1], out[3]))  # prompt ids, completion ids, completion texts
        return out

    peer.trainer._generate = spy
    rows = [peer.step()]
    time.sleep(0.5)  # parked: TRL must not run on while the bench does other work
    assert peer.trainer.state.global_step == 1 and len(calls) == M
    rows.append(peer.step())
    peer.close()
    assert not peer._thread.is_alive() and peer.trainer.state.global_step == 2
    with pytest.raises(RuntimeError, match="already finished"):
        peer.step()

    # generation_batch_size = G: one generate call per group, M per optimizer step
    assert len(calls) == 2 * M and all(len(c[0]) == G for c in calls)
    examples = [_probe_task(None, 0).get(s * M + j) for s in range(2) for j in range(M)]
    expected_prompts = [build_prompt(tok, ex) for ex in examples for _ in range(G)]
    assert [list(p) for c in calls for p in c[0]] == expected_prompts
    for step, row in enumerate(rows):
        done = calls[step * M : (step + 1) * M]
        texts = [t for c in done for t in c[2]]
        exs = [ex for ex in examples[step * M : (step + 1) * M] for _ in range(G)]
        assert row["reward/mean"] == pytest.approx(sum(_parity_reward(e, t) for e, t in zip(exs, texts)) / len(texts))
        assert row["gen/sampled_tokens"] == sum(len(ids) for c in done for ids in c[1])
        assert row["train/tokens"] == sum(len(p) for c in done for p in c[0]) + row["gen/sampled_tokens"]
        assert row["time/step_s"] >= row["time/sampling_s"] + row["time/backprop_s"] > 0


def test_probe_picks_a_candidate_and_reports_each(cfg, tiny_lm, tmp_path):
    model, tok = tiny_lm
    best, per_sample = probe_generation_batch_size(cfg, model, tok, str(tmp_path), log=lambda msg: None)
    assert sorted(per_sample) == [4, 8] and best == min(per_sample, key=per_sample.get)


def test_an_error_in_trl_reaches_the_caller_and_leaves_no_thread(cfg, tiny_lm, tmp_path, monkeypatch):
    model, tok = tiny_lm

    def broken(ex, completion):
        raise ValueError("grader exploded")

    monkeypatch.setitem(
        TASKS, "probe", lambda c, s: Task("probe", lambda i: Example(id=str(i), problem="x", answer="1"), None, broken)
    )
    peer = TRLPeer(cfg, model, tok, steps=2, generation_batch_size=G, out_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="grader exploded"):
        peer.step()
    peer._thread.join(timeout=5)
    assert not peer._thread.is_alive()
    with pytest.raises(RuntimeError, match="grader exploded"):  # a later call fails at once instead of hanging
        peer.step()
