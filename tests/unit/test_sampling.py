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


def test_inverse_cdf_matches_a_full_cumsum_and_skips_zero_mass():
    from dashrl.rollout.hf import inverse_cdf

    g = torch.Generator().manual_seed(3)
    probs = torch.rand((400, 1000), generator=g, dtype=torch.float64)
    probs[probs < 0.7] = 0.0  # most entries carry no mass, whole blocks included
    probs[:, 700:] = 0.0
    u = torch.rand((400, 1), generator=g, dtype=torch.float64)
    oracle = torch.searchsorted(probs.cumsum(-1), u * probs.sum(-1, keepdim=True)).squeeze(1)
    assert torch.equal(inverse_cdf(probs, u, block=64), oracle)
    # u = 1 (the top of the range): the last token with mass, never the zero tail or padding
    last = torch.tensor([int(torch.nonzero(r).max()) for r in probs])
    assert torch.equal(inverse_cdf(probs, torch.ones((400, 1), dtype=torch.float64), block=64), last)


def test_shared_prefill_and_preallocated_cache_change_nothing(tiny_lm, monkeypatch):
    import dashrl.rollout.hf as hf

    model, tok = tiny_lm
    s = HFSampler(model, tok, decoder="plain")  # the transformers loop: every decode step is a model call
    p1, p2 = tok("12+3=")["input_ids"], tok("7*8=")["input_ids"]
    prompts = [p1, p1, p2, p1, p2, p2]
    params = SamplingParams(max_new_tokens=10, temperature=0.0, batch_size=6)
    rows_seen = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: rows_seen.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    fast = s.generate(prompts, params, seed=0)
    hook.remove()
    assert rows_seen[0] == 2  # the prefill ran once per distinct prompt, then all 6 rows decode
    assert all(n <= 6 for n in rows_seen[1:]) and 6 in rows_seen[1:]
    monkeypatch.setattr(hf, "_preallocated", lambda cache, rows, cap: (hf._select_rows(cache, rows), cache)[1])
    plain = s.generate(prompts, params, seed=0)
    alone = [s.generate([p], params, seed=0)[0] for p in prompts]
    static = HFSampler(model, tok).generate(prompts, params, seed=0)  # rollout/decode.py: one prompt KV per group
    for a, b, c, d in zip(fast, plain, alone, static):
        assert a.token_ids == b.token_ids == c.token_ids == d.token_ids
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(d.logprobs), atol=1e-5)
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(c.logprobs), atol=1e-5)


def test_preallocated_cache_survives_rows_finishing_early(tiny_lm, monkeypatch):
    import dashrl.rollout.hf as hf

    model, tok = tiny_lm
    s = HFSampler(model, tok, decoder="plain")
    s.stop_ids = list(range(0, len(tok), 9))  # one token in nine stops a row: rows finish at different steps
    prompts = [tok("ab")["input_ids"]] * 3 + [tok("xyz12")["input_ids"]] * 3
    params = SamplingParams(max_new_tokens=16, temperature=1.0, batch_size=6)
    fast = s.generate(prompts, params, seed=1)
    assert len({len(c.token_ids) for c in fast}) > 2  # the batch really shrank along the way
    monkeypatch.setattr(hf, "_preallocated", lambda cache, rows, cap: (hf._select_rows(cache, rows), cache)[1])
    plain = s.generate(prompts, params, seed=1)
    assert [c.token_ids for c in fast] == [c.token_ids for c in plain]
    assert torch.allclose(
        torch.tensor(sum((c.logprobs for c in fast), [])), torch.tensor(sum((c.logprobs for c in plain), [])), atol=1e-5
    )
