"""Training tasks: an ordered stream of problems plus the reward that grades answers.

A task maps a global sample index to an `Example` deterministically from the seed
(datasets are reshuffled each epoch with a seed-derived permutation), so the problems
of step s are a pure function of (seed, s): resumes and workers never skip or repeat.
Registry: `TASKS` (an unknown name falls back to `dashrl.data.datasets`, which also
takes local JSONL paths).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from dashrl.data import Example
from dashrl.data.arithmetic import arithmetic_example
from dashrl.data.wordproblems import wordproblem_example

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.config import TaskConfig


@dataclass
class Task:
    """A stream of problems: `get(i)` is problem i; `size` is None for endless tasks.

    `reward(example, completion)` grades one answer; None means the standard rewards of
    `dashrl.rewards` by example kind (math equivalence, or code run in the sandbox pool).
    """

    name: str
    get: Callable[[int], Example]
    size: int | None
    reward: Callable[[Example, str], float] | None = None

    def batch(self, step: int, n: int) -> list[Example]:
        """The `n` problems of optimizer step `step` (or of sampling cycle `step`)."""
        return [self.get(step * n + j) for j in range(n)]

    def score(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        """Rewards of a batch of completions (code runs in parallel in the sandbox)."""
        if self.reward is not None:
            return [self.reward(ex, c) for ex, c in zip(examples, completions)]
        from dashrl.rewards import rewards

        return rewards(examples, completions)


def _from_examples(name: str, examples: list[Example], seed: int) -> Task:
    if not examples:
        raise ValueError(f"task {name!r} has no examples")
    n = len(examples)
    perms: dict[int, list[int]] = {}

    def get(i: int) -> Example:
        epoch, k = divmod(i, n)
        if epoch not in perms:
            order = list(range(n))
            random.Random(f"order:{seed}:{epoch}").shuffle(order)
            perms.clear()  # keep one epoch's permutation: O(n) memory
            perms[epoch] = order
        return examples[perms[epoch][k]]

    return Task(name=name, get=get, size=n)


def _arithmetic(cfg: "TaskConfig", seed: int) -> Task:
    return Task("arithmetic", lambda i: arithmetic_example(seed, i, cfg.difficulty), None)


def _wordproblems(cfg: "TaskConfig", seed: int) -> Task:
    return Task("wordproblems", lambda i: wordproblem_example(seed, i, cfg.difficulty), None)


def _dataset(name: str) -> Callable[["TaskConfig", int], Task]:
    def make(cfg: "TaskConfig", seed: int) -> Task:
        from dashrl.data.datasets import DatasetError, load_dataset

        examples = load_dataset(
            name,
            split=cfg.split,
            problem_field=cfg.problem_field or None,
            answer_field=cfg.answer_field or None,
            tests_field=cfg.tests_field or None,
            limit=cfg.limit or None,
        )
        if not examples:
            raise DatasetError(f"{name}: no problems to train on (an empty file, split or limit)")
        return _from_examples(name, examples, seed)

    return make


TASKS: dict[str, Callable[["TaskConfig", int], Task]] = {
    "arithmetic": _arithmetic,
    "wordproblems": _wordproblems,
    "gsm8k": _dataset("gsm8k"),
    "math": _dataset("math_train"),
}
PROCEDURAL = ("arithmetic", "wordproblems")  # generated problems: no records, so no fields, split or limit


def make_task(cfg: "TaskConfig", seed: int) -> Task:
    """Build the training task named by `cfg.name` (a registry name, dataset name or path).

    >>> from dashrl.config import TaskConfig
    >>> make_task(TaskConfig(name="arithmetic", difficulty=1), seed=0).batch(0, 1)[0].problem
    'What is 9 * 3?'
    """
    from dashrl.data.datasets import check_dataset_name

    check_dataset_name(cfg.name, also=tuple(TASKS))
    factory = TASKS.get(cfg.name) or _dataset(cfg.name)
    return factory(cfg, seed)
