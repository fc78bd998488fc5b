"""Bad configs fail before anything heavy loads, naming the key, what was expected and the closest key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashrl.algo.registry import NAMES
from dashrl.config import ConfigError, build_config, load_config

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["--algo.gruop_size", "4"], "unknown key 'algo.gruop_size'; did you mean 'group_size'?"),
        (["--algo.lr", "1e-3"], "did you mean 'train.lr'?"),
        (["--trian.steps", "3"], "unknown section 'trian'; did you mean 'train'?"),
        (["--steps", "3"], "did you mean --train.steps?"),
        (["--train.steps", "many"], "config train.steps: expected int, got 'many'"),
        (
            ["--algo.schedule", "gpro"],
            f"expected one of {', '.join(NAMES)}, got 'gpro'; did you mean 'grpo'?",  # the registry's names
        ),
        (["--algo.group_size", "1"], "config algo.group_size: expected >= 2"),
        (["--train.micro_batch_size", "999"], "config train.micro_batch_size: 999 is larger than the batch"),
        (["--run.loggers", "tensorbord,wandb"], "unknown logger 'tensorbord'; did you mean 'tensorboard'?"),
        (["--run.name", "a/b"], "config run.name: expected a folder name without path separators"),
        (["--run.keep_last", "-1"], "config run.keep_last: expected >= 0"),
        (
            ["--task.problem_field", "q"],
            "config task.problem_field: arithmetic is a procedural task (it has no records to read fields from)",
        ),
        (
            ["--task.name", "wordproblems", "--task.tests_field", "t"],
            "config task.tests_field: wordproblems is a procedural task",
        ),
        (["--dist.shard", "ful"], "config dist.shard: expected one of none, full, got 'ful'; did you mean 'full'?"),
        (
            ["--dist.shard", "full"],
            "config dist.shard: sharding splits the model over Ray trainer actors: needs --dist.samplers >= 1",
        ),
        (
            ["--dist.shard", "full", "--dist.samplers", "1"],
            "config dist.shard: one trainer holds the whole model anyway: needs --dist.trainers >= 2 (got 1)",
        ),
        (
            ["--dist.shard", "full", "--dist.samplers", "1", "--dist.trainers", "2", "--lora.r", "8"],
            "config dist.shard: LoRA trains adapters only",
        ),
    ],
)
def test_bad_overrides_name_the_key_and_the_fix(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert expected in str(err.value)


def test_negative_filter_threshold_is_allowed_it_disables_filtering():
    assert load_config(overrides=["--algo.filter_threshold", "-1"]).algo.filter_threshold == -1.0


def test_errors_in_a_toml_file_name_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nstesp = 3\n")
    with pytest.raises(ConfigError, match=rf"{path}: config: unknown key 'train.stesp'; did you mean 'steps'\?"):
        load_config(path)
    path.write_text("steps = 3\n")  # a field outside any [section]
    with pytest.raises(ConfigError, match=r"in TOML put it under \[train\]"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_a_typo_on_the_command_line_fails_before_torch_is_imported():
    """The 'fails in under a second' check, without timing: nothing heavy was imported."""
    code = (
        "import sys\nfrom dashrl.cli import main\n"
        "rc = main(['train', '--algo.gruop_size', '4'])\n"
        "print(rc, sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == "2 []", proc.stderr
    assert proc.stderr.strip() == "dashrl: config: unknown key 'algo.gruop_size'; did you mean 'group_size'?"


def test_build_config_checks_every_section():
    with pytest.raises(ConfigError, match="expected a table of fields"):
        build_config({"train": 3})


def test_the_ray_path_takes_every_schedule_and_in_training_eval():
    from dashrl.config import load_config

    for schedule in ("grpo", "ppo_multi", "ppo_mini"):
        assert load_config(overrides=["--dist.samplers", "1", "--algo.schedule", schedule]).algo.schedule == schedule
    cfg = load_config(overrides=["--dist.samplers", "1", "--eval.every", "2", "--eval.datasets", "gsm8k"])
    assert cfg.eval.every == 2


def test_field_flags_apply_to_dataset_tasks():
    task = load_config(
        overrides=["--task.name", "data.jsonl", "--task.problem_field", "q", "--task.answer_field", "a"]
    ).task
    assert (task.problem_field, task.answer_field) == ("q", "a")


def test_the_learning_rate_left_unset_follows_lora():
    from dashrl.config import load_config, to_toml

    assert load_config().train.lr == 2e-5
    assert load_config(overrides=["--lora.r", "8"]).train.lr == 3e-4  # the rate measured in docs/lora.md
    assert load_config(overrides=["--lora.r", "8", "--train.lr", "1e-4"]).train.lr == 1e-4  # a given rate wins
    assert "lr = 0.0003" in to_toml(load_config(overrides=["--lora.r", "8"]))  # the run file holds the resolved rate
    assert load_config("quickstart", ["--lora.r", "8"]).train.lr == 3e-4  # the shipped quickstart leaves it unset
