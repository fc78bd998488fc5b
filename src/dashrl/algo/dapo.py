"""DAPO's pieces (Yu et al. 2025) besides its clipped loss: pure functions, torch only.

- Overlong reward shaping: a completion whose length passes `max_tokens - window` loses
  reward linearly, `penalty` at the cap (`overlong_penalty`).
- Dynamic sampling: a group whose (shaped) rewards are all equal has zero advantages and
  teaches nothing; a step keeps the first M groups that are not (`informative_groups`),
  sampling more prompts in rounds (`refill_prompts` sizes a round) until it has M or hits the
  round cap. The loop itself is the schedule's (`dashrl.train.schedules.dynamic_step`).

The clip-higher loss is `PPOClipLoss` with `epsilon_high` (0.28) and token-mean aggregation.
"""

from __future__ import annotations

import math

import torch


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, window: int, penalty: float = 1.0) -> torch.Tensor:
    """Reward added to each completion `[B, G]` for its length (0 or negative); `window` 0 = none.

    `min(0, (max_tokens - window - length) / window) * penalty`, reaching `-penalty` at the cap.

    >>> overlong_penalty(torch.tensor([[10, 12, 14, 16]]), max_tokens=16, window=4)
    tensor([[ 0.0000,  0.0000, -0.5000, -1.0000]])
    """
    if window <= 0:
        return torch.zeros(lengths.shape)
    over = (max_tokens - window - lengths.float()) / window  # [B, G]
    return over.clamp(min=-1.0, max=0.0) * penalty


def informative_groups(advantages: torch.Tensor) -> torch.Tensor:
    """Advantages `[B, G]` -> `[B]` True where the group carries gradient (its rewards differ).

    >>> informative_groups(torch.tensor([[0.0, 0.0], [0.5, -0.5]]))
    tensor([False,  True])
    """
    return (advantages != 0).any(dim=1)


def refill_prompts(need: int, informative: int, sampled: int, floor: float = 0.125) -> int:
    """Prompts to sample in the next round to find `need` more informative groups, from the
    share seen so far this step (`informative` of `sampled`; at least `floor`, so one unlucky
    round does not ask for hundreds).

    >>> refill_prompts(need=2, informative=6, sampled=8)  # share 3/4: 2 / 0.75 = 2.67
    3
    >>> refill_prompts(need=2, informative=0, sampled=8)  # share floored at 1/8
    16
    """
    share = max(informative / max(sampled, 1), floor)
    return max(math.ceil(need / share), need)


def prompt_index(step: int, j: int, per_step: int) -> int:
    """The task index of the `j`-th prompt step `step` draws: the first `per_step` are the step's
    batch (`Task.batch(step, per_step)`), the extras come from a region of the stream no step's
    batch reaches, so the problems stay a pure function of (seed, step, round).

    >>> prompt_index(3, 1, 8), prompt_index(3, 8, 8) - prompt_index(2, 8, 8)
    (25, 1048576)
    """
    if j < per_step:
        return step * per_step + j
    return EXTRA_BASE + step * EXTRA_STRIDE + (j - per_step)


EXTRA_BASE = 1 << 44  # beyond any step's batch
EXTRA_STRIDE = 1 << 20  # extra prompts one step may draw
