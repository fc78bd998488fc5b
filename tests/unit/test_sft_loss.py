"""The SFT loss: hand-computed cross-entropy over completion tokens only; micro-batching invariance."""

import torch
import torch.nn.functional as F

from dashrl.algo import Norm, sft_loss
from dashrl.train.learner import Sample, collate
from dashrl.train.logprobs import completion_logprobs


def test_sft_loss_hand_computed():
    # two rows: 3 real tokens, then 1 real token and 2 padding positions (huge values must not count)
    logprobs = torch.tensor([[-0.5, -1.0, -2.5], [-4.0, -100.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, metrics = sft_loss(logprobs, mask)
    assert loss.item() == (0.5 + 1.0 + 2.5 + 4.0) / 4  # 2.0, exact in fp32
    assert metrics["tokens"].item() == 4
    seq, _ = sft_loss(logprobs, mask, aggregation="seq-mean")
    assert abs(seq.item() - ((0.5 + 1.0 + 2.5) / 3 + 4.0) / 2) < 1e-6


def _records(tok, n=5):
    """SFT-shaped samples with prompts and completions of different lengths."""
    out = []
    for i in range(n):
        prompt = tok(f"<user>What is {i} + {i * 3}?\n<assistant>", add_special_tokens=False)["input_ids"]
        completion = tok(f"It is {i * 4}" + "." * i, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append(Sample(prompt, completion, [0.0] * len(completion), 0.0, 0.0, i, "stop"))
    return out


def test_sft_loss_is_cross_entropy_of_completion_tokens_on_a_model(tiny_lm):
    model, tok = tiny_lm
    samples = _records(tok)
    batch = collate(samples, tok.pad_token_id)
    loss, _ = sft_loss(completion_logprobs(model, batch), batch.loss_mask)
    # oracle: each sequence alone, unpadded, labels -100 on the prompt; F.cross_entropy averages
    nll, count = 0.0, 0
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.completion_ids])
        logits = model(input_ids=ids).logits[0, :-1]
        labels = ids[0, 1:].clone()
        labels[: len(s.prompt_ids) - 1] = -100
        nll += F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
        count += len(s.completion_ids)
    assert abs(loss.item() - nll / count) < 1e-5


def test_sft_micro_batches_give_the_full_batch_gradient(tiny_lm):
    model, tok = tiny_lm
    samples = _records(tok, 6)
    full = collate(samples, tok.pad_token_id)
    norm = Norm(num_seqs=len(samples), num_tokens=float(full.loss_mask.sum()), max_len=full.loss_mask.shape[1])
    model.zero_grad()
    sft_loss(completion_logprobs(model, full), full.loss_mask)[0].backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for part in ([0, 4], [1], [2, 3, 5]):  # uneven parts with different padding
        batch = collate([samples[i] for i in part], tok.pad_token_id)
        sft_loss(completion_logprobs(model, batch), batch.loss_mask, norm=norm)[0].backward()
    for p, g in zip(model.parameters(), want):
        assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4)
    # without the full-batch norm the parts would weigh differently: the check above can fail
    model.zero_grad()
    for part in ([0, 4], [1], [2, 3, 5]):
        batch = collate([samples[i] for i in part], tok.pad_token_id)
        (sft_loss(completion_logprobs(model, batch), batch.loss_mask)[0] / 3).backward()
    assert not all(torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4) for p, g in zip(model.parameters(), want))


def test_sft_on_records_teaches_the_tiny_model_its_completions(tiny_lm):
    from dashrl.data import Example
    from dashrl.data.sft import build_records

    model, tok = tiny_lm
    pairs = [(Example(id=str(i), problem=f"{i}+{i}?", answer=str(2 * i)), f"\\boxed{{{2 * i}}}") for i in range(4)]
    records = build_records(tok, pairs)
    samples = [
        Sample(r.prompt_ids, r.completion_ids, [0.0] * len(r.completion_ids), 0.0, 0.0, i, "stop")
        for i, r in enumerate(records)
    ]
    batch = collate(samples, tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss, _ = sft_loss(completion_logprobs(model, batch), batch.loss_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # from ~log(99) = 4.6 per token to well under 1
