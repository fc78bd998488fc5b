"""The static decoder (rollout/decode.py): merge math, shared-prefix layout, buckets, seeds."""

import pytest
import torch

from dashrl.rollout import SamplingParams
from dashrl.rollout import decode
from dashrl.rollout.hf import HFSampler


def _attention(q, k, v, mask=None):
    """Plain softmax attention in float64: the oracle."""
    s = q.double() @ k.double().transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        s = s + mask.double()
    return torch.softmax(s, -1) @ v.double(), torch.logsumexp(s, -1)


def test_merge_of_two_disjoint_key_sets_is_attention_over_their_union():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 16, generator=g, dtype=torch.float64) for _ in range(3))
    k, v = (
        k.repeat(1, 1, 4, 1),
        v.repeat(1, 1, 4, 1) * torch.linspace(-2, 2, 20, dtype=torch.float64)[:, None],
    )  # 20 keys
    k = k + 3 * torch.randn(k.shape, generator=g, dtype=torch.float64)  # scores spread over a wide range
    first = torch.randperm(20, generator=g)[:7]  # a scattered subset, not a contiguous prefix
    rest = torch.tensor([i for i in range(20) if i not in first.tolist()])
    full, full_lse = _attention(q, k, v)
    o1, lse1 = _attention(q, k[:, :, first], v[:, :, first])
    o2, lse2 = _attention(q, k[:, :, rest], v[:, :, rest])
    merged = decode.merge_attention(o1, lse1, o2, lse2)
    assert torch.allclose(merged, full, atol=1e-12, rtol=0)
    assert torch.allclose(torch.logaddexp(lse1, lse2), full_lse, atol=1e-12, rtol=0)
    # a set that carries no mass (lse -> -inf relative to the other) leaves the other untouched
    lonely = decode.merge_attention(o1, lse1, o2, lse2 - 1e4)
    assert torch.allclose(lonely, o1, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_with_lse_matches_the_oracle_and_respects_the_padding_mask(dtype):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 4, 32, generator=g).to(dtype)
    k, v = torch.randn(2, 3, 9, 32, generator=g).to(dtype), torch.randn(2, 3, 9, 32, generator=g).to(dtype)
    mask = torch.zeros(2, 1, 1, 9, dtype=dtype)
    mask[0, ..., :4] = float("-inf")  # row 0 is left-padded by 4
    o, lse = decode.attention_with_lse(q, k, v, mask)
    ref, ref_lse = _attention(q, k, v, mask)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(o.double(), ref, atol=tol) and torch.allclose(lse.double(), ref_lse, atol=1e-4)
    # the padded keys are never read: changing them changes nothing
    k2 = k.clone()
    k2[0, :, :4] = 100.0
    assert torch.equal(decode.attention_with_lse(q, k2, v, mask)[0], o)


def test_next_bucket_compacts_only_below_the_current_size():
    assert [decode.next_bucket(n, 64) for n in (64, 49, 48, 33, 32, 1)] == [64, 64, 48, 48, 32, 1]
    assert decode.next_bucket(5, 6, buckets=()) == 6  # no buckets: never compact
    assert all(b2 > b1 for b1, b2 in zip(decode.BUCKETS, decode.BUCKETS[1:]))


def _samplers(tiny_lm):
    model, tok = tiny_lm
    fast, plain = HFSampler(model, tok), HFSampler(model, tok, decoder="plain")
    for s in (fast, plain):
        s.stop_ids = list(range(0, len(tok), 9))  # one token in nine stops a row: rows finish at different steps
    return fast, plain, tok


def test_static_decoder_equals_the_plain_loop_with_groups_of_any_shape(tiny_lm):
    fast, plain, tok = _samplers(tiny_lm)
    assert decode.supports(fast.model)
    p1, p2, p3 = tok("12+3=")["input_ids"], tok("7*8 is")["input_ids"], tok("x")["input_ids"]
    prompts = [p1, p2, p1, p1, p3, p2, p1, p2, p2, p3]  # interleaved, unequal groups, unequal lengths (padding)
    for temperature in (0.0, 1.0):
        params = SamplingParams(max_new_tokens=24, temperature=temperature, batch_size=10)
        want = plain.generate(prompts, params, seed=7)
        got = fast.generate(prompts, params, seed=7)
        if temperature:
            assert len({len(c.token_ids) for c in want}) > 3  # the batch shrank, across several buckets
        for a, b in zip(got, want):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)


def test_a_seed_draws_the_same_tokens_whatever_the_buckets_or_prefix_sharing(tiny_lm):
    fast, _, tok = _samplers(tiny_lm)
    prompts = [tok("ab")["input_ids"]] * 4 + [tok("xyz12")["input_ids"]] * 4
    params = SamplingParams(max_new_tokens=20, temperature=1.0, batch_size=8)
    base = fast.generate(prompts, params, seed=3)
    assert len({len(c.token_ids) for c in base}) > 2
    for buckets, share in [((), True), (tuple(range(1, 9)), True), (decode.BUCKETS, False)]:
        fast.buckets, fast.share_prefix = buckets, share  # never compact / compact at every finish / per-row prompt KV
        out = fast.generate(prompts, params, seed=3)
        assert [c.token_ids for c in out] == [c.token_ids for c in base], (buckets, share)
        assert torch.allclose(
            torch.tensor(sum((c.logprobs for c in out), [])),
            torch.tensor(sum((c.logprobs for c in base), [])),
            atol=1e-5,
        )


def test_the_prefix_is_kept_once_per_group_and_compaction_uses_bucket_sizes(tiny_lm, monkeypatch):
    fast, _, tok = _samplers(tiny_lm)
    seen = []
    real = decode.DecodeState.compact

    def compact(self, keep, filled):
        real(self, keep, filled)
        seen.append((len(keep), len(self.prompt_len), self.prefix_kv[0][0].shape[0], self.suffix_kv[0][0].shape[0]))

    monkeypatch.setattr(decode.DecodeState, "compact", compact)
    states = []
    real_init = decode.DecodeState.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        states.append((self.prefix_kv[0][0].shape[0], self.suffix_kv[0][0].shape[0]))

    monkeypatch.setattr(decode.DecodeState, "__init__", init)
    prompts = [tok("ab")["input_ids"]] * 6 + [tok("xyz12")["input_ids"]] * 6
    fast.generate(prompts, SamplingParams(max_new_tokens=30, temperature=1.0, batch_size=12), seed=1)
    assert states == [(2, 12)]  # one KV copy per prompt, a completion buffer per row
    assert seen and all(rows in decode.BUCKETS for rows, *_ in seen)  # compacted to bucket sizes only
    assert all(p == pk and rows == sk for rows, p, pk, sk in seen)


def test_unsupported_models_fall_back_to_the_plain_loop(tiny_lm):
    model, tok = tiny_lm
    model.config.mlp_bias = True  # a layout the static step does not implement
    assert not decode.supports(model)
    with pytest.raises(ValueError, match="valid"):
        HFSampler(model, tok, decoder="compiled-please")


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no oneDNN bf16 on this CPU")
def test_prepacked_bf16_weights_give_the_products_and_tokens_of_plain_weights(tiny_lm):
    w = torch.randn(96, 64, dtype=torch.bfloat16)
    pw = decode.prepack(w)
    assert pw.is_mkldnn and not decode.prepack(w.float()).is_mkldnn  # fp32 weights stay as they are
    for b in (1, 3, 8, 24, 64, 96):  # bucket sizes: every batch the decode step sees
        x = torch.randn(b, 64, dtype=torch.bfloat16)
        assert torch.equal(decode.linear(x, pw), torch.nn.functional.linear(x, w)), b
    model, tok = tiny_lm
    fast = HFSampler(model, tok, dtype="bf16")
    assert decode.pack(fast.model).layers[0].wgu.is_mkldnn
    assert not decode.pack(fast.model, prepacked=False).layers[0].wgu.is_mkldnn
    fast.stop_ids = list(range(0, len(tok), 9))
    prompts = [tok("12+3=")["input_ids"]] * 3 + [tok("7*8 is")["input_ids"]] * 3
    params = SamplingParams(max_new_tokens=16, temperature=1.0, batch_size=6)
    base = fast.generate(prompts, params, seed=5)
    fast.prepack = False
    plain = fast.generate(prompts, params, seed=5)
    assert [c.token_ids for c in base] == [c.token_ids for c in plain]
    assert [c.logprobs for c in base] == [c.logprobs for c in plain]  # bit for bit
