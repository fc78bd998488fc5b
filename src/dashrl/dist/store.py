"""The rollout store: a step's deliveries, handed to trainers one request at a time.

A delivery is a list of whole groups; the store holds only their object refs, the
samples themselves stay in the Ray object store until a trainer fetches them. Ray runs
an actor's calls one at a time, so a delivery popped by one trainer is never seen by
another. Standard library only: the store actor starts without importing torch.
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
    """Deliveries of one step, handed out one per request (Ray runs actor calls one at a time)."""

    def __init__(self) -> None:
        self.queue: deque = deque()
        self.step = -1

    def fill(self, step: int, deliveries: list[tuple[list[int], int, list]]) -> int:
        """`deliveries`: `(group ids, samples, [object ref per group])`, in delivery order."""
        self.step, self.queue = step, deque(deliveries)
        return len(self.queue)

    def next(self, rank: int) -> tuple[Delivery, list] | None:
        """The next delivery for trainer `rank`, or None when the step's batch is used up."""
        if not self.queue:
            return None
        groups, n, refs = self.queue.popleft()
        return Delivery(self.step, rank, groups, n), refs
