"""`dashrl distill` on the tiny model: keeps exactly the completions graded correct, distinct, at most k."""

from __future__ import annotations

import json

import pytest

from dashrl.cli import main
from dashrl.data import Example
from dashrl.data.sft import load_pairs
from dashrl.data.tasks import Task
from dashrl.study.distill import distill, select
from dashrl.rollout import SamplingParams, make_sampler


def test_select_keeps_first_k_distinct_correct():
    assert select(["a", "b", "a", "c", "d"], [1.0, 0.0, 1.0, 1.0, 1.0], k=2) == ["a", "c"]
    assert select(["a", "b"], [0.5, 0.99], k=3) == []  # partial credit is not "correct"


def _even_first_char(example: Example, completion: str) -> float:
    """A reward we control: correct when the completion starts with a character of even code."""
    return float(bool(completion) and ord(completion[0]) % 2 == 0)


def test_distill_keeps_exactly_the_correct_distinct_completions(tiny_lm):
    model, tok = tiny_lm
    examples = [Example(id=f"p{i}", problem=f"Say something {i}", answer="0") for i in range(5)]
    task = Task("t", lambda i: examples[i], len(examples), _even_first_char)
    sampler = make_sampler("hf", model=model, tokenizer=tok)
    # top_k 6 over one token: few distinct texts, so duplicates certainly occur; batch 4 -> sampled in parts
    params = SamplingParams(max_new_tokens=1, temperature=1.0, top_k=6, batch_size=4)
    n, k = 8, 2
    records, stats = distill(sampler, tok, task, problems=5, n=n, k=k, params=params, seed=3)

    from dashrl.data.prompts import build_prompt

    prompts = [build_prompt(tok, ex) for ex in examples for _ in range(n)]
    texts = [c.text for c in sampler.generate(prompts, params, 3)]  # the oracle: one call, same seed
    expected, correct = [], 0
    for j, ex in enumerate(examples):
        seen = []
        for t in texts[j * n : (j + 1) * n]:
            if _even_first_char(ex, t) == 1.0:
                correct += 1
                if t not in seen and len(seen) < k:
                    seen.append(t)
        expected += [(ex.id, t) for t in seen]
    assert [(r["id"], r["completion"]) for r in records] == expected
    assert stats.samples == 5 * n and stats.correct == correct and stats.kept == len(expected)
    assert stats.covered == len({i for i, _ in expected})
    # the case is not trivial: some samples were wrong, and dedup or the cap dropped some correct ones
    assert 0 < stats.correct < stats.samples and stats.kept < stats.correct


def _digits_task(tmp_path):
    path = tmp_path / "digits.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"d{i}", "problem": f"Pick {i}", "answer": str(i)}) + "\n" for i in range(1, 7))
    )
    return str(path)


SMALL = ["--sampler.max_new_tokens", "3", "--sampler.batch_size", "16", "--model.dtype", "fp32"]


def test_distill_command_writes_only_correct_traces(tmp_path, model_dir, capsys):
    from dashrl.rewards import math_reward

    task = _digits_task(tmp_path)
    out = tmp_path / "traces.jsonl"
    rc = main(
        ["distill", "--teacher", model_dir, "--task.name", task, "--n", "16", "--k", "3", "--out", str(out), *SMALL]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "problems covered:" in printed and "kept" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows, "the random tiny model should hit a one-digit answer now and then"
    answers = {f"d{i}": str(i) for i in range(1, 7)}
    for row in rows:
        assert set(row) == {"id", "problem", "completion", "answer", "kind"}
        assert row["answer"] == answers[row["id"]] and math_reward(row["completion"], row["answer"]) == 1.0
    per = {}
    for row in rows:
        per.setdefault(row["id"], []).append(row["completion"])
    assert all(len(v) <= 3 and len(set(v)) == len(v) for v in per.values())
    assert len(load_pairs(str(out))) == len(rows)  # what SFT reads back
    # never overwrites: a second run refuses before loading anything, the file is unchanged
    before = out.read_text()
    assert main(["distill", "--teacher", model_dir, "--task.name", task, "--out", str(out), *SMALL]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == before


def test_distill_from_a_dashrl_run_folder(tmp_path, model_dir, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--model.name", model_dir, "--train.steps", "1", "--run.out_dir", str(runs),
                 "--run.name", "r",
                 "--run.quiet", "true", "--algo.prompts_per_step", "2", "--algo.group_size", "2",
                 "--train.micro_batch_size", "2", *SMALL]) == 0  # fmt: skip
    out = tmp_path / "t.jsonl"
    assert (
        main(
            [
                "distill",
                "--teacher",
                str(runs / "r"),
                "--task.name",
                _digits_task(tmp_path),
                "--n",
                "2",
                "--out",
                str(out),
                *SMALL,
            ]
        )
        == 0
    )
    assert out.is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "/no/such/model"], "does not exist"),
        (["--n", "0"], "--n must be >= 1"),
        (["--task.name", "wordproblems"], "give --problems N"),
        (["--task.name", "/no/such.jsonl"], "no such file"),
        (["--sampler.temprature", "1"], "did you mean 'temperature'"),
        (["--out", "/proc/nope.jsonl"], "/proc is not writable"),
    ],
)
def test_distill_bad_input_is_one_line_before_loading(tmp_path, model_dir, capsys, args, message):
    base = {"--teacher": model_dir, "--task.name": "gsm8k", "--out": str(tmp_path / "o.jsonl")}
    argv = ["distill", *[x for key, v in base.items() if key not in args for x in (key, v)], *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
