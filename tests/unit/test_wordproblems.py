"""Word problems: the answer follows from the story (parsed independently), solutions add up, sets are held out."""

import re

import pytest

from dashrl.config import TaskConfig
from dashrl.data.tasks import make_task
from dashrl.data.wordproblems import EVAL_SETS, eval_set, solution, wordproblem_example

EVENTS = [
    (re.compile(r"(?:finds|buys|gets|is given) (\d+) more"), lambda c, m: c + int(m[1])),
    (re.compile(r"(?:gives|loses|uses) (\d+) "), lambda c, m: c - int(m[1])),
    (re.compile(r"buys (\d+) \w+ with (\d+) \w+ in each"), lambda c, m: c + int(m[1]) * int(m[2])),
    (re.compile(r"has doubles"), lambda c, m: c * 2),
    (re.compile(r"has triples"), lambda c, m: c * 3),
]


def story_answer(problem: str) -> tuple[int, int]:
    """(answer, number of events) read from the story text alone: the oracle."""
    sentences = [s for s in re.split(r"(?<=[.?]) ", problem)]
    count = int(re.search(r" has (\d+) ", sentences[0])[1])
    steps = 0
    for sentence in sentences[1:-1]:
        hits = [(rx.search(sentence), f) for rx, f in EVENTS]
        hits = [(m, f) for m, f in hits if m]
        assert len(hits) == 1, sentence
        count = hits[0][1](count, hits[0][0])
        assert count >= 0
        steps += 1
    assert sentences[-1].startswith("How many")
    return count, steps


@pytest.mark.parametrize("variant", ["base", "mul", "big"])
@pytest.mark.parametrize("steps", [1, 3, 6])
def test_answer_follows_from_the_story(variant, steps):
    for i in range(200):
        ex = wordproblem_example(7, i, steps, variant)
        assert story_answer(ex.problem) == (int(ex.answer), steps)


def test_solution_lines_add_up_and_end_in_the_boxed_answer():
    for i in range(300):
        ex = wordproblem_example(1, i, 4, "mul")
        lines = solution(ex).splitlines()
        assert len(lines) == 4 + 2 and lines[-1] == f"The answer is \\boxed{{{ex.answer}}}."
        for a, op, b, c in re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", solution(ex)):
            assert int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]


def test_variants_differ_as_documented():
    base = [wordproblem_example(0, i, 3, "base") for i in range(300)]
    assert not any("in each" in ex.problem or "doubles" in ex.problem or "triples" in ex.problem for ex in base)
    mul = [wordproblem_example(0, i, 3, "mul") for i in range(300)]
    assert sum("in each" in ex.problem for ex in mul) > 30 and sum("doubles" in ex.problem for ex in mul) > 10
    big = max(int(wordproblem_example(0, i, 1, "big").answer) for i in range(300))
    small = max(int(wordproblem_example(0, i, 1, "base").answer) for i in range(300))
    assert small <= 30 < 150 < big  # base: start <= 20, one event adds <= 10


def test_stream_is_deterministic_and_held_out_sets_are_disjoint():
    task = make_task(TaskConfig(name="wordproblems", difficulty=2), seed=0)
    first = [ex.problem for ex in task.batch(0, 8)]
    assert first == [ex.problem for ex in make_task(TaskConfig(name="wordproblems", difficulty=2), seed=0).batch(0, 8)]
    assert first != [ex.problem for ex in make_task(TaskConfig(name="wordproblems", difficulty=2), seed=1).batch(0, 8)]
    train = {task.get(i).problem for i in range(2000)}
    held = eval_set("wordproblems", 2, 200)
    assert len({ex.problem for ex in held} & train) < 5  # same generator, other seed: overlap only by chance
    assert all(ex.meta["level"] == 2 for ex in held)
    assert {ex.meta["level"] for ex in eval_set("wordproblems_long", 2, 5)} == {4}
    assert set(EVAL_SETS) == {"wordproblems", "wordproblems_long", "wordproblems_big", "wordproblems_mul"}
    # the training reward grades the worked solution correct and a wrong number wrong
    ex = task.get(0)
    assert task.score([ex, ex], [solution(ex), "The answer is \\boxed{-1}."]) == [1.0, 0.0]


def test_bad_steps_or_variant():
    with pytest.raises(ValueError, match="steps"):
        wordproblem_example(0, 0, 7)
    with pytest.raises(ValueError, match="variant"):
        wordproblem_example(0, 0, 2, "huge")
