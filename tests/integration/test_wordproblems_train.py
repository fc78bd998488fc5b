"""`--task.name wordproblems` trains, and its held-out and OOD sets evaluate inside training."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_config as config

from dashrl.config import load_config
from dashrl.train.loop import train
from dashrl.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def test_wordproblems_trains_and_evaluates_its_sets(tmp_path, tiny_lm):
    model, tok = tiny_lm
    sets = "wordproblems,wordproblems_long,wordproblems_big,wordproblems_mul"
    cfg = config(tmp_path, task={"name": "wordproblems", "difficulty": 2},
                 eval={"every": 2, "datasets": sets, "limit": 3, "max_new_tokens": 4})  # fmt: skip
    res = train(cfg, model, tok)
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for name in sets.split(","):
        assert 0.0 <= rows[-1][f"eval/{name}/accuracy"] <= 1.0
    assert rows[0]["gen/mean_tokens"] > 0


def test_shipped_wordproblems_config_loads():
    cfg = load_config("wordproblems")  # a shipped run file, found by name
    assert (cfg.task.name, cfg.task.difficulty, cfg.eval.every) == ("wordproblems", 1, 10)


def test_word_problem_sets_are_eval_sets_for_dashrl_eval_too():
    import pytest

    from dashrl.data.datasets import DatasetError
    from dashrl.train.evaluation import load_eval_sets

    sets = load_eval_sets(["wordproblems", "wordproblems_long"], 3, difficulty=2)
    assert [ex.meta["level"] for ex in sets["wordproblems_long"]] == [4, 4, 4]
    assert sets["wordproblems"][0].id == "words-base-2--1-0"  # the held-out seed -1
    with pytest.raises(DatasetError, match="did you mean 'wordproblems'"):
        load_eval_sets(["wordproblem"], 3)
