"""Per-token logprobs of completions under a model (the trainer's forward pass)."""

from __future__ import annotations

from typing import Any

import torch

from dashrl.train.batching import Collated


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at `targets`: `[N, T, V]`, `[N, T]` -> `[N, T]` (fp32).

    Computed as gathered logit minus logsumexp, so no `[N, T, V]` log-softmax is kept.

    >>> token_logprobs(torch.zeros(1, 1, 4), torch.tensor([[2]]))
    tensor([[-1.3863]])
    """
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T]
    return picked - torch.logsumexp(logits, dim=-1)  # [N, T]


def completion_logprobs(model: Any, batch: Collated, temperature: float = 1.0) -> torch.Tensor:
    """Logprobs `[N, T]` of each completion token given its prompt and earlier tokens.

    Only the T positions that predict completion tokens go through the LM head, not the
    prompt positions: the head over a 49k vocabulary costs as much as several layers.
    """
    T, P = batch.completion_ids.shape[1], batch.prompt_len
    # Index tensor, not an int: transformers then gathers the hidden states contiguously
    # (a strided slice makes the LM-head matmul copy its weight per row).
    keep = torch.arange(P - 1, P - 1 + T, device=batch.input_ids.device)
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = out.logits  # [N, T, V]: position P-1+t predicts completion token t
    return token_logprobs(logits, batch.completion_ids, temperature)
