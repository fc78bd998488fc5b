"""A TRL user's task (chat prompts in a parquet file, reward functions in a .py file) through
TRL's own GRPOTrainer with dashrl's settings: the functions run there unchanged, weighted."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from conftest import make_tiny_model, make_tokenizer  # noqa: E402

from dashrl.config import load_config  # noqa: E402


def test_user_task_runs_through_trl(tmp_path):
    import datasets

    from dashrl.peers.trl_task import ordered_records, run_trl

    rows = [
        {"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "solution": str(a + b)}
        for a in range(1, 4)
        for b in range(1, 4)
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "sums.parquet"))
    (tmp_path / "my_rewards.py").write_text(
        "def correct_reward(completions, solution, **kwargs):\n"
        "    return [float(s in c[0]['content']) for c, s in zip(completions, solution)]\n"
        "def format_reward(completions, **kwargs):\n"
        "    return [1.0 for c in completions]\n"
    )
    cfg = load_config(None, [
        "--task.name", str(tmp_path / "sums.parquet"), "--reward.funcs",
        f"{tmp_path}/my_rewards.py:correct_reward,{tmp_path}/my_rewards.py:format_reward", "--reward.weights", "1,0.2",
        "--train.steps", "2", "--algo.prompts_per_step", "2", "--algo.group_size", "4", "--train.micro_batch_size", "4",
        "--sampler.max_new_tokens", "6", "--model.dtype", "fp32", "--run.out_dir", str(tmp_path), "--run.name", "t",
    ])  # fmt: skip
    tok = make_tokenizer()
    out = run_trl(cfg, make_tiny_model(len(tok)), tok)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in got] == [1, 2]
    for r in got:  # TRL's weighted sum with our weights: correct + 0.2 * 1
        assert r["reward/format_reward"] == 1.0
        assert r["reward/mean"] == pytest.approx(r["reward/correct_reward"] + 0.2)
    from dashrl.data.tasks import make_task

    task = make_task(cfg.task, cfg.train.seed, reward=cfg.reward)
    records = ordered_records(task, 2, 2, tok)
    assert [r["prompt"] for r in records] == [
        ex.messages for s in range(2) for ex in task.batch(s, 2)
    ]  # dashrl's order


RECORDER = '''
import json, os


class Recorder:
    def reset(self, problem, answer, **row):
        with open(os.environ["RECORDER_FILE"], "a") as f:
            f.write(json.dumps([problem, answer]) + "\\n")
        return "Use the tool."

    def lookup(self, key: str) -> str:
        """Look a key up.

        Args:
            key: the key
        """
        return key
'''


def test_environment_runs_through_trl_with_the_rows_dashrl_gives_reset(tmp_path, monkeypatch):
    """`[env]` goes to TRL's `environment_factory`: `reset` gets each row's problem and answer (as
    dashrl's `reset(**row)` does), G rollouts a row, and TRL's tool-call rate is logged as
    `env/tool_calls`. The template is the tool-calling one `dashrl bench --ttr` shares with TRL."""
    from pathlib import Path

    import trl

    from dashrl.data.tasks import make_task
    from dashrl.peers.trl_task import run_trl

    (tmp_path / "rec_env.py").write_text(RECORDER)
    monkeypatch.setenv("RECORDER_FILE", str(tmp_path / "resets.jsonl"))
    template = Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja"
    cfg = load_config(None, [
        "--env.factory", f"{tmp_path}/rec_env.py:Recorder", "--env.max_turns", "2", "--env.max_tokens", "12",
        "--model.chat_template", str(template), "--reward.funcs", "integer",
        "--train.steps", "1", "--algo.prompts_per_step", "2", "--algo.group_size", "4", "--train.micro_batch_size", "4",
        "--sampler.max_new_tokens", "6", "--model.dtype", "fp32", "--run.out_dir", str(tmp_path), "--run.name", "t",
    ])  # fmt: skip
    tok = make_tokenizer()
    out = run_trl(cfg, make_tiny_model(len(tok)), tok)
    resets = [json.loads(line) for line in (tmp_path / "resets.jsonl").read_text().splitlines()]
    task = make_task(cfg.task, cfg.train.seed, reward=cfg.reward)
    want = [[ex.problem, ex.answer] for ex in task.batch(0, 2)]
    assert sorted(resets) == sorted(w for w in want for _ in range(4))
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert "env/tool_calls" in row  # its value is TRL's tools/call_frequency (metrics_row's doctest)
