"""The trainer's logprobs: shared-prompt forward equals the plain forward, values and gradients."""

import torch

from dashrl.train.batching import Sample, collate
from dashrl.train.logprobs import completion_logprobs, shared_prompt_logprobs, token_logprobs


def _samples():
    prompts = [[5, 6, 7, 8], [9, 10]]
    comps = [[11, 12, 13], [14], [15, 16], [17, 18, 19, 20, 2]]
    out = []
    for i, c in enumerate(comps):
        g = i // 2
        out.append(Sample(prompts[g], c, [0.0] * len(c), 0.0, 1.0, g, "stop"))
    return out


def test_token_logprobs_hand_computed():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]]])
    lp = token_logprobs(logits, torch.tensor([[1, 0]]))
    assert torch.allclose(lp, torch.tensor([[-torch.log(torch.tensor(4.0)), 2 - torch.log(torch.exp(torch.tensor(2.0)) + 3)]]))
    lp_t = token_logprobs(logits, torch.tensor([[1, 0]]), temperature=2.0)
    assert torch.allclose(lp_t[0, 1], 1 - torch.log(torch.exp(torch.tensor(1.0)) + 3))


def test_shared_prompt_forward_matches_plain(tiny_lm):
    model, _ = tiny_lm
    batch = collate(_samples(), pad_id=0)
    assert batch.prompt_rows.tolist() == [0, 0, 2, 2]
    params = [p for p in model.parameters()]
    plain = completion_logprobs(model, batch)
    (plain * batch.loss_mask).sum().backward()
    g_plain = [p.grad.clone() for p in params]
    model.zero_grad()
    shared = shared_prompt_logprobs(model, batch)
    (shared * batch.loss_mask).sum().backward()
    mask = batch.loss_mask.bool()
    assert torch.allclose(plain[mask], shared[mask], atol=1e-5)
    for a, p in zip(g_plain, params):
        assert torch.allclose(a, p.grad, atol=1e-5)
