"""The rollout store: a backprop call's deliveries, handed to trainers one request at a time.

A delivery is a list of whole groups; the store holds only their object refs (and which
members of each group to train on), the samples themselves stay in the Ray object store
until a trainer fetches them. Delivery `i` goes to trainer `i % H'`: a fixed split, so
the summed gradient (and so the run) is the same bit for bit on every rerun, however the
trainers' speeds vary. Standard library only: the store actor starts without torch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Delivery:
    """Whole groups a trainer fetched in one request (the store's log line)."""

    step: int
    rank: int
    groups: list[int]
    samples: int = 0


class RolloutStore:
    """Deliveries of one backprop call, one queue per trainer (Ray runs actor calls one at a time).

    >>> store = RolloutStore()
    >>> store.fill(0, [([0], 4, ["ref0"]), ([1, 2], 3, ["ref1", "ref2"])], world=2)
    2
    >>> store.next(1), store.next(1)
    ((Delivery(step=0, rank=1, groups=[1, 2], samples=3), ['ref1', 'ref2']), None)
    """

    def __init__(self) -> None:
        self.queues: dict[int, deque] = {}
        self.step = -1

    def fill(self, step: int, deliveries: list[tuple[list[int], int, list]], world: int = 1) -> int:
        """`deliveries`: `(group ids, samples, [(group object ref, member indices, their advantages)...])`,
        in order (the advantages are the driver's: it scores the samples)."""
        self.step = step
        self.queues = {r: deque(deliveries[r::world]) for r in range(world)}
        return len(deliveries)

    def next(self, rank: int) -> tuple[Delivery, list] | None:
        """The next delivery for trainer `rank`, or None when its share is used up."""
        queue = self.queues.get(rank)
        if not queue:
            return None
        groups, n, refs = queue.popleft()
        return Delivery(self.step, rank, groups, n), refs
