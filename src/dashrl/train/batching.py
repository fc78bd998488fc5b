"""How rollout records (`dashrl.rollout.samples.Sample`) are cut into micro-batches and collated into tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from dashrl.rollout.samples import Sample, pack_groups


def micro_batches(samples: Sequence[Sample], by: str, size: int, token_budget: int = 4096) -> list[list[int]]:
    """Cut sample indices into micro-batches; every index appears exactly once.

    - `samples`: at most `size` samples each, sorted by length so padding is small.
    - `groups`: whole groups together (`dashrl.rollout.samples.pack_groups`); a group larger
      than `size` alone, cut into micro-batches of `size`.
    - `tokens`: sorted by length, as many as fit `token_budget` padded tokens (at least one).

    >>> s = [Sample([1], [2] * n, [0.0] * n, 0.0, 1.0, n // 2, "stop") for n in (1, 5, 2, 4)]
    >>> micro_batches(s, "samples", 2)
    [[1, 3], [2, 0]]
    """
    if by == "groups":
        members: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            members.setdefault(s.group, []).append(i)
        out: list[list[int]] = []
        for pack in pack_groups([(g, len(m)) for g, m in members.items()], size):
            flat = [i for g in pack for i in members[g]]
            out += [
                flat[j : j + size] for j in range(0, len(flat), size)
            ]  # only a lone group larger than `size` is cut
        return out
    ranked = sorted(range(len(samples)), key=lambda i: -samples[i].length)
    if by == "samples":
        return [ranked[i : i + size] for i in range(0, len(ranked), size)]
    if by == "tokens":
        out, current, width = [], [], 0
        for i in ranked:
            w = max(width, samples[i].length)
            if current and w * (len(current) + 1) > token_budget:
                out.append(current)
                current, w = [], samples[i].length
            current.append(i)
            width = w
        return out + ([current] if current else [])
    raise ValueError(f"unknown micro-batch mode {by!r}; valid: ['groups', 'samples', 'tokens']")


PASS_BYTES = 2 * 2**30  # activations one packed pass may hold, when train.pass_tokens is 0 (auto)


def auto_pass_tokens(model_config: Any, budget_bytes: int = PASS_BYTES) -> int:
    """Tokens per packed pass for `budget_bytes` of activations, from the model's shape.

    A decoder layer keeps about 20 bytes per hidden unit and 10 per MLP unit for each token
    until backward (bf16 autocast; measured on SmolLM2-135M: 0.85 MB a token over 30 layers).
    Clamped to 256 .. 4096: fewer starves the products, more gains nothing measurable on CPU.

    >>> from types import SimpleNamespace as C
    >>> auto_pass_tokens(C(num_hidden_layers=30, hidden_size=576, intermediate_size=1536))  # SmolLM2-135M
    2663
    >>> auto_pass_tokens(C(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008))  # a 7B
    349
    """
    layers = getattr(model_config, "num_hidden_layers", None) or 24
    hidden = getattr(model_config, "hidden_size", None) or 1024
    inter = getattr(model_config, "intermediate_size", None) or 4 * hidden
    per_token = layers * (20 * hidden + 10 * inter)
    return max(256, min(4096, budget_bytes // per_token))


def pass_tokens(samples: Sequence[Sample]) -> int:
    """Tokens a packed pass over `samples` computes: each group's prompt once, every completion but its last token.

    >>> s = [Sample([1, 2], [3, 4, 5], [0.0] * 3, 0.0, 1.0, 0, "stop")] * 2
    >>> pass_tokens(s)
    6
    """
    prompts = {(s.group, tuple(s.prompt_ids)): len(s.prompt_ids) for s in samples}
    return sum(prompts.values()) + sum(max(len(s.completion_ids) - 1, 0) for s in samples)


def join_passes(batches: list[list[int]], samples: Sequence[Sample], budget: int) -> list[list[int]]:
    """Consecutive micro-batches joined into one packed pass while the pass computes at most `budget`
    tokens (`pass_tokens`); a micro-batch over the budget alone stays a pass of its own.

    The loss of a pass is the sum of its micro-batches' losses (every loss is normalised by the
    whole step's denominators), so joining changes the gradient only by summation order, while
    short completions get products large enough to use the machine (docs/performance-short.md).

    >>> s = [Sample([1] * 10, [2] * 11, [0.0] * 11, 0.0, 1.0, g, "stop") for g in range(4)]
    >>> join_passes([[0], [1], [2], [3]], s, 40)
    [[0, 1], [2, 3]]
    >>> join_passes([[0], [1], [2], [3]], s, 10)
    [[0], [1], [2], [3]]
    """
    out: list[list[int]] = []
    size = 0
    for idx in batches:
        n = pass_tokens([samples[i] for i in idx])
        if out and size + n <= budget:
            out[-1] = out[-1] + idx
            size += n
        else:
            out.append(list(idx))
            size = n
    return out


@dataclass
class Collated:
    """A micro-batch as tensors: prompts left-padded to P, completions right-padded to T."""

    input_ids: torch.Tensor  # [N, P + T]
    attention_mask: torch.Tensor  # [N, P + T]
    position_ids: torch.Tensor  # [N, P + T]
    completion_ids: torch.Tensor  # [N, T]
    loss_mask: torch.Tensor  # [N, T] 1 on completion tokens
    old_logprobs: torch.Tensor  # [N, T] sampling policy
    advantages: torch.Tensor  # [N]
    prompt_len: int  # P
    prompt_rows: torch.Tensor  # [N] first row holding the same prompt (rows of one group share it)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def distinct_tokens(self) -> int:
        """Tokens of the micro-batch's sequences with each group's prompt counted once: the count
        that a backprop MFU rests on. The packed and shared-prompt passes run one position fewer
        per sample (a completion's last token predicts nothing), so by positions run the MFU is
        a few percent lower (docs/performance-short.md)."""
        firsts = torch.unique(self.prompt_rows)
        P = self.prompt_len
        return int(self.attention_mask[firsts, :P].sum()) + int(self.attention_mask[:, P:].sum())


def collate(samples: Sequence[Sample], pad_id: int, device: torch.device | str = "cpu") -> Collated:
    """Pack samples into padded tensors (completion tokens start at column P for every row)."""
    N = len(samples)
    P = max(len(s.prompt_ids) for s in samples)
    T = max(max(len(s.completion_ids) for s in samples), 1)
    ids = torch.full((N, P + T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, P + T), dtype=torch.long)
    old = torch.zeros((N, T))
    for i, s in enumerate(samples):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        ids[i, P - p : P] = torch.as_tensor(s.prompt_ids)
        attn[i, P - p : P] = 1
        if c:
            ids[i, P : P + c] = torch.as_tensor(s.completion_ids)
            attn[i, P : P + c] = 1
            old[i, :c] = torch.as_tensor(s.logprobs)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    first: dict[tuple[int, tuple[int, ...]], int] = {}
    prompt_rows = [first.setdefault((s.group, tuple(s.prompt_ids)), i) for i, s in enumerate(samples)]
    return Collated(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=pos.to(device),
        completion_ids=ids[:, P:].to(device),
        loss_mask=attn[:, P:].float().to(device),
        old_logprobs=old.to(device),
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32, device=device),
        prompt_len=P,
        prompt_rows=torch.tensor(prompt_rows, dtype=torch.long, device=device),
    )
