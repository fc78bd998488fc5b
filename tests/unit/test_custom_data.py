"""Bring-your-own data: parquet, csv, json, save_to_disk folders, chat prompts, templates, bad records."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_tokenizer  # noqa: E402

from dashrl.config import ConfigError, TaskConfig, load_config  # noqa: E402
from dashrl.data import Example  # noqa: E402
from dashrl.data.datasets import DatasetError, load_dataset  # noqa: E402
from dashrl.data.prompts import build_prompt  # noqa: E402
from dashrl.data.tasks import make_task, task_from_records, wrap_prompt  # noqa: E402

ROWS = [
    {"question": "What is 2 + 2?", "answer": "4", "level": 1},
    {"question": "What is 3 * 3?", "answer": "9", "level": 2},
]


def _write(tmp_path: Path, fmt: str) -> str:
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    if fmt == "saved":
        ds.save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved")
    path = tmp_path / f"rows.{fmt}"
    {"parquet": ds.to_parquet, "csv": ds.to_csv, "json": ds.to_json}[fmt](str(path))
    return str(path)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "saved"])
def test_every_format_loads_the_same_examples_and_keeps_columns(tmp_path, fmt):
    examples = load_dataset(_write(tmp_path, fmt))
    assert [(e.problem, e.answer) for e in examples] == [("What is 2 + 2?", "4"), ("What is 3 * 3?", "9")]
    assert examples[1].columns["level"] == 2 and examples[1].columns["question"] == "What is 3 * 3?"


def test_saved_dataset_dict_split(tmp_path):
    import datasets

    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    ).save_to_disk(str(tmp_path / "dd"))
    assert len(load_dataset(str(tmp_path / "dd"), split="test")) == 1
    with pytest.raises(DatasetError, match=r"dd: no split 'dev'; splits: train, test \(--task.split\)"):
        load_dataset(str(tmp_path / "dd"), split="dev")


def test_bad_record_names_file_row_and_field(tmp_path):
    import datasets

    path = tmp_path / "bad.parquet"
    datasets.Dataset.from_list(
        [{"question": "ok", "answer": "1"}, {"question": "no answer", "answer": None}]
    ).to_parquet(str(path))
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert str(err.value).startswith(f"{path}:row 2: missing field 'answer' for the answer")
    assert len(load_dataset(str(path), require_reference=False)) == 2  # user reward functions need no answer


def test_chat_prompt_column_and_bad_message(tmp_path):
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    (ex,) = task_from_records([{"prompt": chat, "answer": "4"}], TaskConfig(), 0).batch(0, 1)
    assert ex.messages == chat and ex.problem == "2+2?"
    with pytest.raises(
        DatasetError, match=r"^dataset:row 1: field 'prompt' message 0 should be \{'role': str, 'content': str\}"
    ):
        task_from_records([{"prompt": [{"role": "user"}], "answer": "4"}], TaskConfig(), 0)


def test_chat_rendering_matches_apply_chat_template():
    tok = make_tokenizer()
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    ids = build_prompt(tok, Example(id="1", problem="2+2?", messages=chat))
    want = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    want = want["input_ids"] if hasattr(want, "keys") else want
    assert ids == list(want)
    assert tok.decode(ids) == "<system>Be terse.\n<user>2+2?\n<assistant>"  # the system message kept


def test_plain_problem_rendering_unchanged_without_system_prompt_or_template():
    tok = make_tokenizer()
    ex = make_task(TaskConfig(name="arithmetic"), seed=0).get(0)
    assert ex.messages is None
    text = tok.decode(build_prompt(tok, ex))
    assert text == f"<user>{ex.problem}\nPut your final answer within \\boxed{{}}.\n<assistant>"


def test_system_prompt_and_template():
    tok = make_tokenizer()
    cfg = TaskConfig(name="arithmetic", system_prompt="You are exact.", template="Compute: {problem}")
    ex = make_task(cfg, seed=0).get(0)
    assert tok.decode(build_prompt(tok, ex)) == f"<system>You are exact.\n<user>Compute: {ex.problem}\n<assistant>"
    chat = Example(
        id="1", problem="q", messages=[{"role": "system", "content": "own"}, {"role": "user", "content": "q"}]
    )
    assert wrap_prompt(chat, cfg).messages[0]["content"] == "own"  # a chat prompt keeps its own system message


def test_template_naming_a_missing_column_fails_at_load(tmp_path):
    with pytest.raises(DatasetError, match=r"--task.template names 'topic' but the record has no such field"):
        task_from_records([{"problem": "p", "answer": "1"}], TaskConfig(template="{topic}: {problem}"), 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task.template", "Solve it"], "config task.template: expected a {problem} placeholder, got 'Solve it'"),
        (["--reward.funcs", "math,", "--reward.weights", "1"], "config reward.funcs: expected comma-separated names"),
        (["--reward.funcs", "math", "--reward.weights", "1,2"], "config reward.weights: 2 weights for 1 functions"),
        (["--reward.weights", "heavy"], "config reward.weights: expected comma-separated numbers, got 'heavy'"),
    ],
)
def test_config_errors(args, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=args)
    assert str(err.value).startswith(message)


def test_hub_subset_and_split_reach_datasets(monkeypatch):
    import datasets

    seen = {}

    def fake(repo, config=None, split=None):
        seen.update(repo=repo, config=config, split=split)
        return [{"question": "q", "answer": "1"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    (ex,) = make_task(TaskConfig(name="hf:openai/gsm8k", subset="main", split="test"), seed=0).batch(0, 1)
    assert seen == {"repo": "openai/gsm8k", "config": "main", "split": "test"} and ex.answer == "1"
