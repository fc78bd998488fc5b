"""train.cast_once: one autocast region over a step's micro-batches gives the same gradient, bit for bit,
in the step after an optimizer step too (no stale casts)."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from dashrl.config import load_config
from dashrl.algo.advantages import full_norm
from dashrl.rollout.samples import Sample
from dashrl.train.learner import Learner


def samples(vocab: int, M: int = 4, G: int = 4) -> list[Sample]:
    r = random.Random(0)
    out = []
    for g in range(M):
        prompt = [r.randrange(3, vocab) for _ in range(r.randrange(5, 9))]
        for j in range(G):
            n = r.randrange(3, 9)
            out.append(
                Sample(prompt, [r.randrange(3, vocab) for _ in range(n)], [-1.0] * n, 0.0, (-1.0) ** j, g, "stop")
            )
    return out


@pytest.mark.parametrize(
    "extra", [[], ["--train.head_chunk", "0"], ["--train.packed", "false"], ["--algo.beta", "0.04"], ["--lora.r", "4"]]
)
def test_cast_once_is_bit_identical_to_a_cast_per_micro_batch(tiny_lm, extra):
    model, tok = tiny_lm
    batch = samples(len(tok))
    norm = full_norm(batch, 8)
    grads = {}
    for once in ("true", "false"):
        args = [
            "--model.dtype",
            "bf16",
            "--algo.prompts_per_step",
            "4",
            "--algo.group_size",
            "4",
            "--train.micro_batch_size",
            "4",
            "--train.pass_tokens",
            "1",  # a pass per micro-batch: 4 of them, each would cast the weights again
        ]
        lrn = Learner(load_config(None, args + ["--train.cast_once", once] + extra), copy.deepcopy(model), tok, 1)
        lrn.backprop(batch, norm)
        lrn.optimizer_step(False)  # the casts of step 2 must be of the new weights
        lrn.backprop(batch, norm)
        grads[once] = [p.grad.clone() for p in lrn.policy.parameters()]
    assert len(grads["true"]) == len(grads["false"]) > 0
    for a, b in zip(grads["true"], grads["false"]):
        assert torch.equal(a, b)
    assert any(bool(g.any()) for g in grads["true"])  # a gradient to compare
