"""Prompt selection before sampling: GRESO's rule on a hand-worked history, the selector's
proposals and adaptation, the state a checkpoint carries, and building selectors by name."""

from __future__ import annotations

import json
import random

import pytest

from dashrl.data import Example
from dashrl.data.tasks import Task
from dashrl.select.greso import Greso, adapt, group_kind, skip_probability


def pool(n: int) -> Task:
    """A finite pool of `n` prompts in a fixed order (prompt i % n at stream position i)."""
    return Task("pool", lambda i: Example(id=str(i % n), problem=f"p{i % n}", answer="1"), n)


def u(seed: int, step: int, i: int) -> float:
    """The uniform draw GRESO compares with a prompt's skip probability at stream position i."""
    return random.Random(f"greso:{seed}:{step}:{i}").random()


def ids(examples):
    return [ex.id for ex in examples]


def test_the_rule_by_hand():
    assert [skip_probability(0.5, k, 0.01) for k in (0, 1, 2)] == [0.0, 0.5, 0.75]
    assert skip_probability(0.1, 3, 0.01) == pytest.approx(0.99)  # 0.1^3 = 0.001 < the floor
    assert group_kind([1.0, 1.0, 1.0]) == "easy" and group_kind([0.0, 0.0]) == "hard"
    assert group_kind([0.5, 0.5], correct=[0.0, 0.0]) == "hard" and group_kind([0.0, 0.5]) == "informative"
    assert adapt(0.5, 1 / 12, 0.25 / 3, 0.01, 0.05, 0.95) == 0.49  # at the target: skip more
    assert adapt(0.95, 0.0, 0.25 / 3, 0.01, 0.05, 0.95) == 0.95


def test_greso_skips_by_a_hand_worked_history():
    sel = Greso(pool(4), per_step=2, seed=7)
    first, skipped = sel.propose(0, 2)
    assert ids(first) == ["0", "1"] and skipped == 0  # nothing has a history yet
    sel.observe(0, first, [[1.0, 1.0], [0.0, 1.0]])  # "0" all right, "1" informative
    m0 = sel.end_step(0)
    assert m0["select/zero_variance_share"] == 0.5 and m0["select/prompts_easy"] == 1.0
    second, _ = sel.propose(1, 2)
    sel.observe(1, second, [[0.0, 0.0], [0.0, 0.0]])  # "2" and "3" all wrong
    m1 = sel.end_step(1)
    assert (m1["select/p_easy"], m1["select/p_hard"]) == (0.5, 0.5)  # still in the first epoch: no adapting
    chances = {i: sel.skip_chance(i) for i in "0123"}
    assert chances == {"0": (0.5, "easy"), "1": (0.0, "informative"), "2": (0.5, "hard"), "3": (0.5, "hard")}
    # step 2 walks positions 4, 5, ... (prompts 0, 1, 2, 3, 0, ...), skipping where the draw falls below
    expect, pos, skipped = [], 4, 0
    while len(expect) < 2:
        pid = str(pos % 4)
        if u(7, 2, pos) < chances[pid][0]:
            skipped += 1
        else:
            expect.append(pid)
        pos += 1
    third, n_skipped = sel.propose(2, 2)
    assert ids(third) == expect and n_skipped == skipped and sel.cursor == pos
    assert 0 < skipped  # seed 7 passes over at least one prompt here (a wrong rule would differ)


def test_a_streak_grows_and_one_informative_visit_resets_it():
    sel = Greso(pool(1), per_step=1, seed=0)
    for step in range(3):
        sel.observe(step, [Example(id="0", problem="p")], [[1.0, 1.0]])
    assert sel.skip_chance("0") == (0.875, "easy")  # 1 - 0.5^3
    sel.observe(3, [Example(id="0", problem="p")], [[1.0, 0.0]])
    assert sel.skip_chance("0") == (0.0, "informative")


def test_skips_happen_at_their_probability():
    sel = Greso(pool(1), per_step=1, seed=3, max_skips=10**9)
    for step in range(2):
        sel.observe(step, [Example(id="0", problem="p")], [[0.0, 0.0]])  # hard twice: skip 0.75
    skipped = sum(sel.propose(s, 1)[1] for s in range(2, 2002))
    share = skipped / (skipped + 2000)  # every proposal ends on one kept prompt
    assert share == pytest.approx(0.75, abs=0.02)


def test_p_adapts_towards_the_target_after_the_first_epoch():
    sel = Greso(pool(2), per_step=2, seed=0)
    batch, _ = sel.propose(0, 2)
    sel.observe(0, batch, [[1.0, 1.0], [0.0, 1.0]])
    assert sel.end_step(0)["select/p_easy"] == 0.5  # cursor 2 = size: the first epoch just ended
    sel.cursor = 3
    sel.observe(1, batch, [[1.0, 1.0], [0.0, 1.0]])  # easy share 1/2 >= 0.25/3; hard share 0 < 0.5/3
    m = sel.end_step(1)
    assert (m["select/p_easy"], m["select/p_hard"]) == (0.49, 0.51)


def test_a_pool_where_everything_is_skipped_still_proposes():
    sel = Greso(pool(2), per_step=2, seed=0, p_easy=0.05, keep_floor=0.0, max_skips=5)
    for step in range(30):
        sel.observe(step, [Example(id="0", problem="p"), Example(id="1", problem="p")], [[1.0, 1.0]] * 2)
    batch, skipped = sel.propose(30, 2)
    assert len(batch) == 2 and skipped == 5


def test_in_the_first_epoch_greso_proposes_the_tasks_own_batches():
    task = pool(10)
    sel = Greso(task, per_step=4, seed=0)
    for step in range(2):
        batch, skipped = sel.propose(step, 4)
        assert ids(batch) == ids(task.batch(step, 4)) and skipped == 0
        sel.observe(step, batch, [[1.0, 1.0]] * 4)  # all easy: skipped from the next visit on


def test_selectors_by_name_and_by_path(tmp_path):
    from dashrl.config import SelectConfig
    from dashrl.select import SelectError, make_selector, selector_class

    assert make_selector(SelectConfig(), pool(4), 2, 0) is None  # uniform: the schedules' own order
    sel = make_selector(SelectConfig(name="greso", p_easy=0.3), pool(4), 2, 0)
    assert sel.inner.p_easy == 0.3 and sel.inner.per_step == 2
    mine = tmp_path / "mine.py"
    mine.write_text("class Half:\n    def __init__(self, task):\n        self.task = task\n")
    with pytest.raises(SelectError, match=r"^select.name '.*mine.py:Half': lacks propose, observe, end_step"):
        selector_class(f"{mine}:Half")
    mine.write_text("def Half(task):\n    pass\n")
    with pytest.raises(SelectError, match="is not a class|lacks"):
        selector_class(f"{mine}:Half")


def test_first_round_follows_the_informative_share():
    sel = Greso(pool(100), per_step=4, seed=0)
    assert sel.first_round(4, 1.5) == 6  # nothing seen yet: the oversampling factor
    batch, _ = sel.propose(0, 4)
    sel.observe(0, batch, [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # 1 of 4 informative
    sel.end_step(0)
    assert sel.first_round(4, 1.5) == 20  # 4 / (1/4) x 1.25
    sel.observe(1, batch, [[0.0, 0.0]] * 4)  # none informative: the share floors at 1/8
    sel.end_step(1)
    assert sel.first_round(4, 1.5) == 32  # 4 x 8 x 1.25 = 40, capped at 8 M
    small = Greso(pool(12), per_step=4, seed=0)
    small.informative_share = 0.0
    assert small.first_round(4, 1.5) == 12  # within one pass over a pool of 12


def test_state_round_trips_through_json_and_continues_alike():
    def run(sel, steps):
        out = []
        for s in steps:
            batch, _ = sel.propose(s, 3)
            sel.observe(s, batch, [[float(int(ex.id) % 3 == 0)] * 2 for ex in batch])
            out.append((ids(batch), sel.end_step(s)))
        return out

    a = Greso(pool(5), per_step=3, seed=11)
    run(a, range(4))
    state = json.loads(json.dumps(a.state_dict()))
    b = Greso(pool(5), per_step=3, seed=11)
    b.load_state_dict(state)
    assert run(a, range(4, 9)) == run(b, range(4, 9))
