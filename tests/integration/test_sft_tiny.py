"""`--algo.name sft` through the one run loop, on the tiny model: the logged loss is the
hand-computed cross-entropy of the completion tokens, records come in seeded epochs, bad
data fails in one line before any model loads, and a JSONL run leaves a whole run folder."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from dashrl.cli import main
from dashrl.train.loop import train
from dashrl.train.metrics import read_metrics

from test_preflight import no_model  # noqa: F401  (fixture)
from test_resume_errors import one_line_error

# problems and completions of different lengths, so micro-batches pad differently
PAIRS = [("1+1?", "\\boxed{2}"), ("What is 12 * 3?", "12 * 3 = 36, so \\boxed{36}"), ("9-4?", "5"),
         ("Add 7 and 8.", "7 + 8 = \\boxed{15}."), ("2^3?", "2*2*2 = 8. \\boxed{8}")]  # fmt: skip


def write_jsonl(path, pairs=PAIRS, problem="problem", completion="completion"):
    path.write_text("".join(json.dumps({problem: p, completion: c}) + "\n" for p, c in pairs))
    return path


def hand_nll(model, tok, pairs):
    """Cross-entropy of the completion tokens (and the EOS after them), each pair alone and
    unpadded, the prompt written out by hand as RL renders it (the tiny chat template with the
    math instruction), its positions labelled -100; mean over all completion tokens."""
    total, count = 0.0, 0
    for problem, completion in pairs:
        prompt = tok(
            f"<user>{problem}\nPut your final answer within \\boxed{{}}.\n<assistant>", add_special_tokens=False
        )["input_ids"]
        target = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]  # [L-1, V]
        labels = ids[0, 1:].clone()
        labels[: len(prompt) - 1] = -100  # prompt tokens are not predicted
        total += F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
        count += len(target)
    return total / count, count


def test_sft_step_loss_is_the_hand_computed_cross_entropy_of_completion_tokens(tmp_path, tiny_lm):
    """One step over all five records, cut into micro-batches of 2 (padded differently): the
    logged loss is the whole batch's token-mean cross-entropy under the initial weights."""
    model, tok = tiny_lm
    initial = copy.deepcopy(model)
    data = write_jsonl(tmp_path / "pairs.jsonl")
    cfg = tiny_config(tmp_path, algo={"schedule": "sft", "prompts_per_step": 5}, sft={"data": str(data)},
                      train={"steps": 1, "micro_batch_size": 2})  # fmt: skip
    res = train(cfg, model, tok)
    want, count = hand_nll(initial, tok, PAIRS)
    row = res.rows[0]
    assert row["loss"] == pytest.approx(want, abs=1e-5)
    assert row["sft/completion_tokens"] == count and row["train/samples"] == 5
    assert "reward/mean" not in row and "filter/kept_frac" not in row
    assert not torch.equal(next(initial.parameters()), next(model.parameters()))  # it stepped
    # the prompt is really masked: counting its tokens too would give another number
    assert abs(want - hand_nll_with_prompt(initial, tok, PAIRS)) > 1e-2


def test_sft_nll_is_the_hand_computed_cross_entropy(tiny_lm):
    from dashrl.data import Example
    from dashrl.train.sft import sft_nll

    model, tok = tiny_lm
    pairs = [(Example(id=str(i), problem=p, answer=""), c) for i, (p, c) in enumerate(PAIRS)]
    nll, count = sft_nll(model, tok, pairs, batch_size=2)
    want, want_count = hand_nll(model, tok, PAIRS)
    assert nll == pytest.approx(want, abs=1e-5) and count == want_count


def hand_nll_with_prompt(model, tok, pairs):
    total, count = 0.0, 0
    for problem, completion in pairs:
        text = f"<user>{problem}\nPut your final answer within \\boxed{{}}.\n<assistant>{completion}"
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        total += F.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        count += ids.shape[1] - 1
    return total / count


def test_records_come_in_seeded_epochs_that_wrap(tmp_path, tiny_lm):
    from dashrl.config import build_config
    from dashrl.train.sft import SFTSource, load_sft_data

    model, tok = tiny_lm
    data = write_jsonl(tmp_path / "pairs.jsonl")

    def stream(seed):
        cfg = build_config(
            {"algo": {"schedule": "sft", "prompts_per_step": 2}, "sft": {"data": str(data)}, "train": {"seed": seed}}
        )
        src = SFTSource(cfg, load_sft_data(cfg), tok, inner=None, learner=None)
        return [i for step in range(5) for i in src.task.batch(step, 2)]

    order = stream(0)
    assert sorted(order[:5]) == sorted(order[5:]) == list(range(5))  # every record once per epoch
    assert order == stream(0) and order != stream(1)  # a pure function of the seed
    assert order[:5] != order[5:]  # each epoch is shuffled anew


def test_a_bad_jsonl_record_fails_in_one_line_before_the_model_loads(tmp_path, no_model, capsys):  # noqa: F811
    bad = tmp_path / "traces.jsonl"
    bad.write_text(
        json.dumps({"problem": "1+1?", "completion": "2"})
        + "\n"
        + json.dumps({"problem": "2+2?", "answer": "4"})
        + "\n"
    )
    runs = tmp_path / "runs"
    assert main(["train", "--algo.name", "sft", "--sft.data", str(bad), "--run.out_dir", str(runs)]) == 1
    err = one_line_error(capsys)
    assert f"{bad}:2: missing field 'completion'" in err
    assert not runs.exists()  # nothing written
    assert (
        main(["train", "--algo.name", "sft", "--sft.data", str(tmp_path / "nope.jsonl"), "--run.out_dir", str(runs)])
        == 1
    )
    assert f"{tmp_path / 'nope.jsonl'}: no such file" in one_line_error(capsys)
    assert (
        main(
            [
                "train",
                "--algo.name",
                "sft",
                "--sft.data",
                "human",
                "--task.name",
                "arithmetic",
                "--run.out_dir",
                str(runs),
            ]
        )
        == 1
    )
    assert "task 'arithmetic' ships no human solutions" in one_line_error(capsys)


def test_sft_config_refuses_rl_only_settings(capsys):
    assert main(["train", "--algo.name", "sft", "--algo.loss", "pg"]) == 2
    assert "the sft schedule trains with the sft loss" in one_line_error(capsys)
    assert main(["train", "--algo.name", "sft", "--algo.beta", "0.1"]) == 2
    assert "no KL term" in one_line_error(capsys)
    assert main(["train", "--algo.loss", "sft"]) == 2
    assert "goes with --algo.name sft" in one_line_error(capsys)


def test_sft_from_a_jsonl_file_leaves_a_whole_run_folder(tmp_path, model_dir, capsys):
    """`dashrl train --algo.name sft --sft.data FILE.jsonl` with renamed fields: metrics,
    eval, checkpoint, summary and `dashrl report`; the training loss falls on repeated records."""
    data = write_jsonl(tmp_path / "traces.jsonl", problem="question", completion="trace")
    runs = tmp_path / "runs"
    argv = ["train", "--model.name", model_dir, "--model.dtype", "fp32", "--algo.name", "sft", "--sft.data", str(data),
            "--sft.problem_field", "question", "--sft.completion_field", "trace", "--algo.prompts_per_step", "5",
            "--train.steps", "6", "--train.lr", "1e-2", "--train.warmup_steps", "0", "--train.micro_batch_size", "2",
            "--eval.every", "3", "--eval.datasets", "arithmetic", "--eval.limit", "2", "--eval.max_new_tokens", "4",
            "--run.out_dir", str(runs), "--run.name", "sft", "--run.quiet", "true",
            "--run.loggers", "tensorboard"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    run_dir = runs / "sft"
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert rows[-1]["loss"] < 0.75 * rows[0]["loss"]  # the same five records every step: it learns them
    assert [r["sft/epoch"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert "eval/arithmetic/accuracy" in rows[2] and "eval/arithmetic/accuracy" in rows[5]
    assert "eval/arithmetic/accuracy" not in rows[0]
    summary = (run_dir / "summary.md").read_text()
    assert "| loss, first 3 steps |" in summary and "reward" not in summary
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-000006"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    saved = (run_dir / "config.toml").read_text()
    assert 'name = "sft"' in saved and 'loss = "sft"' in saved and "[sft]" in saved
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    md = (run_dir / "report" / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| sft |"))
    assert "| sft | sft | 6 | - | - |" in line and " -> " in line  # no reward; the loss first -> last
