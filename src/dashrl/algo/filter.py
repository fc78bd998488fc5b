"""Gradient filtering over a step's samples (DASH): which samples go to backprop, and the
denominators they are normalised by. The per-advantage rule is `dashrl.algo.advantages.gradient_filter`;
these apply it to sample records (`dashrl.rollout.samples.Sample` or `SampleRef`: anything with
`advantage` and `num_tokens`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from dashrl.algo.advantages import gradient_filter
from dashrl.algo.losses import Norm


def keep(samples: Sequence[Any], threshold: float) -> list[Any]:
    """Gradient filtering: the samples with |advantage| above `threshold` (negative keeps all).

    >>> from types import SimpleNamespace as S
    >>> [s.i for s in keep([S(i=i, advantage=a) for i, a in enumerate([0.0, 0.3, -1.0])], 0.1)]
    [1, 2]
    """
    if not samples:
        return []
    mask = gradient_filter(torch.tensor([s.advantage for s in samples]), threshold)
    return [s for s, k in zip(samples, mask.tolist()) if k]


def full_norm(samples: Sequence[Any], max_len: int) -> Norm:
    """Denominators over `samples`, filtered ones included: dropping a near-zero-advantage
    sample then removes only its (near-zero) term instead of re-weighting the rest.

    >>> from types import SimpleNamespace as S
    >>> full_norm([S(num_tokens=3), S(num_tokens=5)], 8)
    Norm(num_seqs=2, num_tokens=8.0, max_len=8)
    """
    return Norm(num_seqs=len(samples), num_tokens=float(sum(s.num_tokens for s in samples)), max_len=max_len)
