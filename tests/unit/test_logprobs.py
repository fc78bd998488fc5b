"""The trainer's logprobs: shared-prompt forward equals the plain forward, values and gradients."""

import pytest
import torch

from dashrl.train.learner import Sample, collate
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
    assert torch.allclose(
        lp, torch.tensor([[-torch.log(torch.tensor(4.0)), 2 - torch.log(torch.exp(torch.tensor(2.0)) + 3)]])
    )
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


def test_chunked_head_equals_full_log_softmax():
    """HeadLogprobs over chunks of 3 rows == log_softmax of the full logits: values and both gradients."""
    from dashrl.train.logprobs import HeadLogprobs

    torch.manual_seed(0)
    h = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(17, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 17, (10,))
    g = torch.randn(10, dtype=torch.float64)
    for temp in (1.0, 0.7):
        full = torch.log_softmax((h @ w.t()) / temp, dim=-1).gather(1, t[:, None]).squeeze(1)
        ref = torch.autograd.grad((full * g).sum(), (h, w))
        chunked = HeadLogprobs.apply(h, w, t, temp, 3, torch.float64)
        got = torch.autograd.grad((chunked * g).sum(), (h, w))
        assert chunked.dtype == torch.float32
        assert torch.allclose(chunked.double(), full, atol=1e-6)
        for a, b in zip(ref, got):
            assert torch.allclose(a, b, atol=1e-6)


def test_trainer_logprobs_equal_the_models_own_head(tiny_lm):
    """The chunked head in completion_logprobs == the model's logits + log_softmax (fp32 division, as the sampler),
    on real positions; 0 on padding."""
    model, _ = tiny_lm
    batch = collate(_samples(), pad_id=0)
    lp = completion_logprobs(model, batch, temperature=0.7, chunk=2)  # 4 chunks of the 7 real tokens
    P = batch.prompt_len
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    ).logits
    ref = (
        torch.log_softmax(logits[:, P - 1 : -1].float() / 0.7, -1)
        .gather(-1, batch.completion_ids[..., None])
        .squeeze(-1)
    )
    mask = batch.loss_mask.bool()
    assert torch.allclose(lp[mask], ref[mask], atol=1e-5)
    assert (lp[~mask] == 0).all()


def test_packed_equals_padded_values_and_gradients(tiny_lm):
    """One packed row without padding (prompts once per group, block-diagonal attention) == the padded forward."""
    from dashrl.train.logprobs import pack, packed_logprobs

    model, _ = tiny_lm
    batch = collate(_samples(), pad_id=0)
    pk = pack(batch)
    # prompts 4 + 2 tokens once each, completions without their last token: 2 + 0 + 1 + 4
    assert pk.input_ids.shape == (1, 13)
    assert pk.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 2, 3, 4, 5]
    params = list(model.parameters())
    plain = completion_logprobs(model, batch, temperature=0.7)
    (plain * batch.loss_mask * torch.arange(1.0, 5.0)[:, None]).sum().backward()
    g_plain = [p.grad.clone() for p in params]
    model.zero_grad()
    packed = packed_logprobs(model, batch, temperature=0.7, chunk=3)
    (packed * batch.loss_mask * torch.arange(1.0, 5.0)[:, None]).sum().backward()
    assert model.config._attn_implementation == "sdpa"  # restored after the packed pass
    mask = batch.loss_mask.bool()
    assert torch.allclose(plain[mask], packed[mask], atol=1e-5)
    assert (packed[~mask] == 0).all()
    for a, p in zip(g_plain, params):
        assert torch.allclose(a, p.grad, atol=1e-5)


@pytest.mark.parametrize("order", [[0, 4, 1, 2, 3], [0, 1, 2, 3, 4]])
def test_one_attention_call_per_group_equals_one_per_piece(tiny_lm, order):
    """The packed pass's attention, one masked call per group (contiguous, and groups interleaved so a
    group's pieces must be gathered), equals the attention of each piece computed alone: its prompt
    causally, a completion over all of its prompt and causally over itself."""
    from dashrl.train.logprobs import attention_blocks, pack, packed_attention

    extra = Sample([5, 6, 7, 8], [21, 22], [0.0] * 2, 0.0, 1.0, 0, "stop")  # group 0 again, after group 1
    batch = collate([(_samples() + [extra])[i] for i in order], pad_id=0)
    pk = pack(batch)
    blocks = attention_blocks(pk.pieces)
    assert len(blocks) == 2 and all(b.length == sum(n for s, n, ps, p in pk.pieces if (ps if p else s) == b.start)
                                     for b in blocks)  # fmt: skip
    assert (blocks[0].index is None) == (order == [0, 4, 1, 2, 3])
    gen = torch.Generator().manual_seed(0)
    L = pk.input_ids.shape[1]
    q, k, v = (torch.randn(1, 4, L, 8, generator=gen) for _ in range(3))
    out, _ = packed_attention(None, q, k[:, :2], v[:, :2], None, scaling=0.3, dashrl_blocks=blocks)
    k, v = k[:, :2].repeat_interleave(2, dim=1), v[:, :2].repeat_interleave(2, dim=1)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for s, n, ps, p in pk.pieces:
        keys = torch.cat([k[:, :, ps : ps + p], k[:, :, s : s + n]], dim=2)
        vals = torch.cat([v[:, :, ps : ps + p], v[:, :, s : s + n]], dim=2)
        mask = torch.ones(n, p + n, dtype=torch.bool).tril_(p)
        want = sdpa(q[:, :, s : s + n], keys, vals, attn_mask=mask, scale=0.3)
        assert torch.allclose(out[0, s : s + n].transpose(0, 1), want[0], atol=1e-6), (s, n)


def test_packed_pass_only_where_it_is_exact(tiny_lm):
    """The packed pass is the default only for models whose attention it reproduces; a model that
    refuses the attention switch (transformers only warns) gets an error, never the wrong attention."""
    import pytest
    from transformers import MistralConfig, MistralForCausalLM

    from dashrl.train.logprobs import packable, packed_logprobs

    model, _ = tiny_lm
    assert packable(model)
    small = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=99,
    )
    assert not packable(
        MistralForCausalLM(MistralConfig(sliding_window=8, **small))
    )  # sliding window: not applied by the packed pass
    assert packable(MistralForCausalLM(MistralConfig(sliding_window=None, **small)))

    class Opaque(type(model)):  # a class transformers will not switch (as one whose source it cannot read)
        @classmethod
        def _can_set_attn_implementation(cls):
            return False

    model.__class__ = Opaque
    assert not packable(model)
    with pytest.raises(RuntimeError, match="did not switch"):
        packed_logprobs(model, collate(_samples(), pad_id=0))
