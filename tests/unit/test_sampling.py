"""Token sampling: greedy, truncation, logprob convention, determinism."""

import torch

from dashrl.rollout import SamplingParams
from dashrl.rollout.hf import HFSampler, sample_tokens

LOGITS = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 5.0, 1.0]])


def test_greedy_takes_argmax_with_plain_logprobs():
    tok, lp = sample_tokens(LOGITS, 0.0, 1.0, 0, None)
    assert tok.tolist() == [1, 2]
    assert torch.allclose(lp, torch.log_softmax(LOGITS, -1)[[0, 1], [1, 2]])


def test_top_k_one_is_greedy_but_logprobs_are_untruncated():
    g = torch.Generator().manual_seed(0)
    tok, lp = sample_tokens(LOGITS, 0.5, 1.0, 1, g)
    assert tok.tolist() == [1, 2]
    assert torch.allclose(lp, torch.log_softmax(LOGITS / 0.5, -1)[[0, 1], [1, 2]])


def test_top_p_keeps_the_nucleus():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    tok, _ = sample_tokens(logits, 1.0, 0.6, 0, g)  # p = .64 .24 .09 .03: nucleus {0}
    assert set(tok.tolist()) == {0}
    tok, _ = sample_tokens(logits, 1.0, 0.7, 0, g)  # crosses 0.7 with token 1: {0, 1}
    assert set(tok.tolist()) == {0, 1}


def test_sampling_frequencies_follow_softmax():
    g = torch.Generator().manual_seed(1)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).repeat(20000, 1)
    tok, _ = sample_tokens(logits, 1.0, 1.0, 0, g)
    freq = torch.bincount(tok, minlength=3).float() / 20000
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.015)


def test_generate_is_deterministic_and_stops(tiny_lm):
    model, tok = tiny_lm
    s = HFSampler(model, tok)
    prompts = [tok("ab")["input_ids"], tok("abcdef")["input_ids"]] * 2
    params = SamplingParams(max_new_tokens=12, temperature=1.0, batch_size=3)
    a, b = s.generate(prompts, params, seed=5), s.generate(prompts, params, seed=5)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert [c.token_ids for c in a] != [c.token_ids for c in s.generate(prompts, params, seed=6)]
    for c in a:
        assert len(c.token_ids) == len(c.logprobs) <= 12
        assert c.finish_reason == ("stop" if c.token_ids[-1] in s.stop_ids else "length")
        assert (c.finish_reason == "length") == (len(c.token_ids) == 12 and c.token_ids[-1] not in s.stop_ids)
        assert all(lp <= 0 for lp in c.logprobs)


def test_stop_token_ends_a_row_early(tiny_lm):
    model, tok = tiny_lm
    with torch.no_grad():  # zero final norm: every logit is 0, so greedy always picks token 0
        model.model.norm.weight.zero_()
    s = HFSampler(model, tok)
    out = s.generate([tok("x")["input_ids"]], SamplingParams(max_new_tokens=5, temperature=0.0), seed=0)
    # all logits equal -> greedy picks token 0 (pad), never EOS: runs to the length limit
    assert out[0].finish_reason == "length" and len(out[0].token_ids) == 5
    s.stop_ids = [0]
    out = s.generate([tok("x")["input_ids"]], SamplingParams(max_new_tokens=5, temperature=0.0), seed=0)
    assert out[0].finish_reason == "stop" and out[0].token_ids == [0]


def test_bf16_sampler_keeps_its_own_copy_and_syncs(tiny_lm):
    model, tok = tiny_lm
    s = HFSampler(model, tok, dtype="bf16")
    assert s.model is not model and next(s.model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    s.load_weights(model.state_dict())
    for (n, p), q in zip(model.named_parameters(), s.model.parameters()):
        assert torch.equal(p.to(torch.bfloat16), q), n
