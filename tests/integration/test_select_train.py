"""Prompt selection in training runs on the tiny model: GRESO's first epoch is the task's own order
bit for bit, it skips the prompts whose groups keep teaching nothing, it draws dynamic sampling's
refills, a user's selector by path trains, and a selector that raises stops the run in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_model, make_tokenizer
from conftest import tiny_config as config

from dashrl.data import Example
from dashrl.data.tasks import Task
from dashrl.train.loop import RunError, train

ROOT = Path(__file__).resolve().parents[2]


def pool_task(n: int = 8, easy: tuple[str, ...] = ()) -> Task:
    """A pool of `n` prompts revisited each epoch. Reward: the share of lowercase letters (it varies
    within a group of the random tiny model's answers), except that the prompts in `easy` always
    get 1.0 (all right: zero variance, so nothing to learn from them)."""

    def get(i: int) -> Example:
        return Example(id=str(i % n), problem=f"Say a {i % n}", answer="a")

    def reward(ex: Example, text: str) -> float:
        return 1.0 if ex.id in easy else sum(c.islower() for c in text) / max(len(text), 1)

    return Task(name="pool", get=get, size=n, reward=reward)


def run(tmp_path: Path, name: str, task: Task, **sections):
    tok = make_tokenizer()
    cfg = config(tmp_path / name, **sections)
    return train(cfg, make_tiny_model(len(tok)), tok, task=task)


def weights(res) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in res.learner.policy.module.state_dict().items()}


def test_greso_in_its_first_epoch_is_the_uniform_run_bit_for_bit(tmp_path):
    """No prompt has a history yet, so GRESO proposes the task's own batches: the same samples, the
    same weights as the default run, which builds no selector at all."""
    plain = run(tmp_path, "uniform", pool_task(8), train={"steps": 2})
    greso = run(tmp_path, "greso", pool_task(8), train={"steps": 2}, select={"name": "greso"})
    assert "select/skipped" not in plain.rows[0]  # uniform: no selector, no select/* metrics
    assert [r["select/skipped"] for r in greso.rows] == [0.0, 0.0]
    a, b = weights(plain), weights(greso)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["reward/mean"] for r in plain.rows] == [r["reward/mean"] for r in greso.rows]


def test_greso_skips_the_prompts_that_keep_teaching_nothing(tmp_path):
    """Prompts 0-3 always get reward 1 (easy), 4-7 mostly vary: from the second epoch on the easy
    prompts are passed over, a varying one only after a run of equal rewards of its own."""
    res = run(tmp_path, "g", pool_task(8, easy=("0", "1", "2", "3")), train={"steps": 8}, select={"name": "greso"})
    rows = res.rows
    assert sum(r["select/skipped"] for r in rows[:2]) == 0  # the first epoch: nothing has a history
    assert sum(r["select/skipped_easy"] for r in rows[2:]) >= 6
    for prev, r in zip(rows, rows[1:]):  # a hard skip needs a prompt on a hard run
        assert r["select/skipped_hard"] == 0 or prev["select/prompts_hard"] > 0
    for r in rows:
        assert r["select/candidates"] == 4 + r["select/skipped"]  # M kept, plus those passed over
        assert r["select/skipped"] == r["select/skipped_easy"] + r["select/skipped_hard"]
    assert rows[-1]["select/prompts_easy"] == 4.0  # the four easy prompts, each on a run of easy visits
    shares = [r["select/zero_variance_share"] for r in rows[2:]]
    assert sum(shares) / len(shares) < 0.5  # half the pool is easy: without skipping it would be >= 0.5
    from dashrl.cli.report import SELECT_PLOT, report

    md = report([res.run_dir])  # the prompt states, plotted
    assert (md.parent / SELECT_PLOT).stat().st_size > 0 and f"]({SELECT_PLOT})" in md.read_text()


def test_greso_draws_dynamic_samplings_refills(tmp_path):
    res = run(
        tmp_path, "d", pool_task(8, easy=("0", "1", "2", "3")), train={"steps": 4},
        algo={"name": "dapo", "prompts_per_step": 4, "group_size": 4, "max_rounds": 3},
        select={"name": "greso"},
    )  # fmt: skip
    for r in res.rows:  # every prompt a round sampled came through the selector
        assert r["select/candidates"] == r["dynamic/prompts_sampled"] + r["select/skipped"]


def test_the_docs_example_selector_trains(tmp_path):
    """The selector in docs/algorithms.md ("Filtering before sampling"), by path."""
    section = (ROOT / "docs" / "algorithms.md").read_text().split("## Filtering before sampling", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    path = tmp_path / "my_selector.py"
    path.write_text(code)
    res = run(tmp_path, "u", pool_task(4, easy=("0", "1")), train={"steps": 3},
              select={"name": f"{path}:SkipSolved"})  # fmt: skip
    assert [r["select/solved"] for r in res.rows] == [2, 2, 2]
    assert res.rows[-1].get("skipped") is None


def test_a_selector_that_raises_stops_the_run_in_one_line_keeping_the_checkpoints(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(
        "from dashrl.select.greso import Greso\n\n"
        "class Bad(Greso):\n"
        "    def propose(self, step, n):\n"
        "        if step == 2:\n"
        "            raise KeyError('boom')\n"
        "        return super().propose(step, n)\n"
    )
    with pytest.raises(RunError) as err:
        run(tmp_path, "b", pool_task(8), train={"steps": 4}, run={"save_every": 1}, select={"name": f"{path}:Bad"})
    msg = str(err.value)
    assert "\n" not in msg and re.search(
        r"select.name '.*bad.py:Bad': Bad.propose raised KeyError: 'boom' at step 3", msg
    )
    assert "the last checkpoint (step 2) is intact" in msg
    assert (tmp_path / "b" / "run" / "checkpoints" / "step-000002").is_dir()


def test_a_selector_path_that_cannot_load_fails_before_the_model(tmp_path):
    from dashrl.config import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        config(tmp_path, select={"name": "nope.py:X"})
    path = tmp_path / "half.py"
    path.write_text("class Half:\n    def propose(self, step, n):\n        return [], 0\n")
    with pytest.raises(RunError, match=r"lacks observe, end_step, first_round, state_dict, load_state_dict"):
        train(config(tmp_path, select={"name": f"{path}:Half"}), model=None, tokenizer=None, task=pool_task())
