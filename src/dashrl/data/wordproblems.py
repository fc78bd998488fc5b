"""Procedural multi-step arithmetic word problems, each with a worked solution.

A story about one person and one kind of object: a starting count, then `steps` events,
then "How many ... now?". Difficulty = number of steps (1-6). Problem `index` of seed
`seed` is a pure function of (seed, index, steps, variant), so runs, resumes and workers
see the same problems. Every intermediate count stays >= 0.

The worked solution (`solution(example)`, kept in `meta["solution"]`) writes one line per
event with its arithmetic, then "The answer is \\boxed{N}.": the human-style solution
SFT-H trains on.

Variants:
  - `base` (training): events add (finds, buys: 1-10) or subtract (gives away, loses);
    starting count 2-20;
  - `mul`: also multiplication, packs (buys 2-5 bags of 2-6) and doubling/tripling;
  - `big`: `base` with numbers about ten times larger.
`eval_set(name, difficulty, n)` gives the held-out sets (seed -1; training seeds are
>= 0): `wordproblems` (the training distribution), and out of distribution
`wordproblems_long` (two more steps), `wordproblems_big` (larger numbers) and
`wordproblems_mul` (multiplication events).

Why `base` has no multiplication: SmolLM2-135M-Instruct, greedy, solved 26% of one-step
and 2% of two-step problems when a third of the events multiply (100 held-out problems
each); see docs/study.md for the measured accuracies that set the default difficulty.
"""

from __future__ import annotations

import random
from typing import Callable

from dashrl.data import Example

NAMES = (
    "Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jack",
    "Kira", "Leo", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Rosa", "Sam", "Tara",
)  # fmt: skip
FRIENDS = ("her brother", "his sister", "a friend", "a neighbour", "the teacher", "a classmate")
OBJECTS = (
    "apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "coins",
    "cards", "balloons", "books", "eggs",
)  # fmt: skip
CONNECTORS = ("Then", "After that", "Later", "Next")
ADD_SUB = ("add", "sub")
MIXED = ("add", "add", "sub", "sub", "pack", "times")
VARIANTS = {"base": (1, ADD_SUB), "mul": (1, MIXED), "big": (10, ADD_SUB)}  # (number scale, event kinds)
MAX_STEPS = 6
HELD_OUT_SEED = -1  # training streams use seeds >= 0


def _event(rng: random.Random, count: int, obj: str, scale: int, kinds: tuple[str, ...]) -> tuple[str, str, int]:
    """One event: (story sentence, solution line, new count); `{name}` marks the person."""
    kind = rng.choice([k for k in kinds if k != "sub"] if count == 0 else kinds)
    if kind == "add":
        b = rng.randint(1, 10 * scale)
        verb = rng.choice(["finds", "buys", "gets", "is given"])
        return (
            f"Then {{name}} {verb} {b} more {obj}.",
            f"Then {{name}} has {count} + {b} = {count + b} {obj}.",
            count + b,
        )
    if kind == "sub":
        b = rng.randint(1, count)
        what, ing = rng.choice(
            [
                (f"gives {b} {obj} to {rng.choice(FRIENDS)}", "Giving away"),
                (f"loses {b} {obj}", "Losing"),
                (f"uses {b} {obj}", "Using"),
            ]
        )
        return f"Then {{name}} {what}.", f"{ing} {b} leaves {count} - {b} = {count - b} {obj}.", count - b
    if kind == "pack":
        k, b = rng.randint(2, 5), rng.randint(2, 6 * scale)
        unit = rng.choice(["bags", "boxes", "packs"])
        return (
            f"Then {{name}} buys {k} {unit} with {b} {obj} in each.",
            f"The {unit} hold {k} * {b} = {k * b} {obj}, so {{name}} has {count} + {k * b} = {count + k * b} {obj}.",
            count + k * b,
        )
    m = rng.choice([2, 3])
    word = {2: "doubles", 3: "triples"}[m]
    return (
        f"Then the number of {obj} {{name}} has {word}.",
        f"The number {word}: {count} * {m} = {count * m} {obj}.",
        count * m,
    )


def wordproblem_example(seed: int, index: int, steps: int = 2, variant: str = "base") -> Example:
    """Problem `index` of the stream `seed`, with `steps` events after the start.

    >>> ex = wordproblem_example(0, 0, 2)
    >>> ex.problem.endswith("now?"), ex.answer == solution(ex).split("boxed{")[1].rstrip("}.")
    (True, True)
    """
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown word-problem variant {variant!r}; valid: {sorted(VARIANTS)}")
    scale, kinds = VARIANTS[variant]
    rng = random.Random(f"words:{seed}:{index}:{steps}:{variant}")
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    count = rng.randint(2, 20 * scale)
    story = [f"{{name}} has {count} {obj}."]
    lines = [f"{{name}} starts with {count} {obj}."]
    for step in range(steps):
        sentence, line, count = _event(rng, count, obj, scale, kinds)
        story.append(sentence.replace("Then", rng.choice(CONNECTORS) if step else "Then", 1))
        lines.append(line)
    story.append(f"How many {obj} does {{name}} have now?")
    lines.append(f"The answer is \\boxed{{{count}}}.")
    fill: Callable[[list[str]], str] = lambda parts: "\n".join(parts).replace("{name}", name)  # noqa: E731
    return Example(
        id=f"words-{variant}-{steps}-{seed}-{index}",
        problem=fill(story).replace("\n", " "),
        answer=str(count),
        meta={"dataset": "wordproblems", "level": steps, "subject": variant, "solution": fill(lines)},
    )


def solution(example: Example) -> str:
    """The worked solution of a word problem, ending in `\\boxed{answer}`."""
    return example.meta["solution"]


EVAL_SETS: dict[str, Callable[[int], tuple[int, str]]] = {
    "wordproblems": lambda d: (d, "base"),  # held out, same difficulty as training
    "wordproblems_long": lambda d: (min(d + 2, MAX_STEPS), "base"),  # OOD: two more steps
    "wordproblems_big": lambda d: (d, "big"),  # OOD: numbers ~10x larger
    "wordproblems_mul": lambda d: (d, "mul"),  # OOD: packs and doubling too
}


def eval_set(name: str, difficulty: int, n: int = 100) -> list[Example]:
    """`n` held-out problems of the evaluation set `name` (see `EVAL_SETS`) around `difficulty`.

    >>> [len(eval_set("wordproblems_long", 2, 3)), eval_set("wordproblems_long", 2, 1)[0].meta["level"]]
    [3, 4]
    """
    if name not in EVAL_SETS:
        raise ValueError(f"unknown word-problem evaluation set {name!r}; valid: {sorted(EVAL_SETS)}")
    steps, variant = EVAL_SETS[name](difficulty)
    return [wordproblem_example(HELD_OUT_SEED, i, steps, variant) for i in range(n)]
