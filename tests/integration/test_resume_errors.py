"""`dashrl train` on bad input and bad luck: one line, non-zero exit, nothing written damaged."""

from __future__ import annotations

import errno
import os
import signal

import pytest
import torch

from dashrl.cli import main
from conftest import tiny_config
from dashrl.train.checkpoint import latest_checkpoint, load_weights
from dashrl.train.loop import Interrupted, RunError, train
from dashrl.train.metrics import read_metrics

from test_resume import letter_task


def config(tmp_path, **sections):
    return tiny_config(tmp_path, {"train": {"steps": 3}, "run": {"save_every": 1, "loggers": ""}}, **sections)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("dashrl: "), err
    return err


@pytest.mark.parametrize(
    "args, status, expected",
    [
        (["--resume", "{tmp}/nowhere"], 2, "run folder {tmp}/nowhere does not exist"),
        (["--model.name", "{tmp}/no-model"], 1, "model folder {tmp}/no-model does not exist"),
        (["--task.name", "{tmp}/no.jsonl"], 1, "{tmp}/no.jsonl: no such file"),
        (
            ["--run.out_dir", "{tmp}/file/runs"],
            1,
            "cannot write the run folder {tmp}/file/runs/x: {tmp}/file is a file",
        ),
        (["--config", "{tmp}/no.toml"], 2, "config file not found: {tmp}/no.toml"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_status(tmp_path, capsys, args, status, expected):
    (tmp_path / "file").write_text("")
    args = [a.format(tmp=tmp_path) for a in args]
    out_dir = [] if "--run.out_dir" in args or "--resume" in args else ["--run.out_dir", str(tmp_path / "runs")]
    assert main(["train", *args, *out_dir, "--run.name", "x"] if "--resume" not in args else ["train", *args]) == status
    assert expected.format(tmp=tmp_path) in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()  # nothing was created for a run that never started


def test_full_disk_during_a_save_keeps_the_last_checkpoint_and_resumes(tmp_path, tiny_lm, monkeypatch):
    model, tok = tiny_lm
    real = tok.save_pretrained
    calls = {"n": 0}

    def save(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(tok, "save_pretrained", save)
    with pytest.raises(
        RunError, match="No space left on device; the last checkpoint \\(step-000001\\) is intact"
    ) as err:
        train(config(tmp_path), model, tok, task=letter_task())
    assert "dashrl train --resume" in str(err.value)
    run = tmp_path / "run"
    assert latest_checkpoint(run).name == "step-000001"
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]
    from conftest import make_tiny_model

    res = train(config(tmp_path), make_tiny_model(len(tok)), tok, task=letter_task())  # space is back
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]
    assert latest_checkpoint(run).name == "step-000003" and res.rows[-1]["step"] == 3


def test_full_disk_while_logging_metrics_is_one_error_and_no_torn_line(tmp_path, tiny_lm, monkeypatch):
    model, tok = tiny_lm
    real_fsync = os.fsync
    count = {"n": 0}

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            count["n"] += 1
            if count["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr("dashrl.train.metrics.os.fsync", fsync)
    with pytest.raises(RunError, match="metrics.jsonl: No space left on device; the last checkpoint is intact"):
        train(config(tmp_path), model, tok, task=letter_task())
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert text.count("\n") == 1 and text.endswith("}\n")


def signalling_task(*signums):
    """`letter_task` that sends this process `signums` while step 2 (index 1) is starting."""
    task = letter_task()
    real_batch = task.batch

    def batch(step, n):
        if step == 1:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return real_batch(step, n)

    task.batch = batch
    return task


@pytest.fixture
def sigint_default():
    """SIGINT as an interactive Python has it, whatever this test process inherited (a
    background job of a script starts with SIGINT ignored); restored afterwards."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_sigint_finishes_the_step_saves_and_says_how_to_resume(tmp_path, tiny_lm, sigint_default):
    model, tok = tiny_lm
    task = signalling_task(signal.SIGINT)
    with pytest.raises(Interrupted) as err:
        train(config(tmp_path, run={"save_every": 0}), model, tok, task=task)
    assert err.value.signum == signal.SIGINT
    assert f"stopped after step 2 of 3; saved {tmp_path / 'run' / 'checkpoints' / 'step-000002'}" in str(err.value)
    assert f"resume with: dashrl train --resume {tmp_path / 'run'}" in str(err.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    from conftest import make_tiny_model

    fresh = make_tiny_model(len(tok))
    load_weights(fresh, latest_checkpoint(tmp_path / "run"))
    assert all(torch.equal(weights[k], v) for k, v in fresh.state_dict().items())


def test_a_signal_the_process_ignores_stays_ignored(tmp_path, tiny_lm):
    """A background job of a shell script starts with SIGINT ignored: Ctrl-C on the script must not stop it."""
    model, tok = tiny_lm
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        res = train(config(tmp_path), model, tok, task=signalling_task(signal.SIGINT))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)
    assert [r["step"] for r in read_metrics(res.run_dir / "metrics.jsonl")] == [1, 2, 3]


def test_a_run_folder_with_another_config_is_not_resumed(tmp_path, tiny_lm):
    model, tok = tiny_lm
    train(config(tmp_path, train={"steps": 1}), model, tok, task=letter_task())
    with pytest.raises(RunError, match=r"holds a run with another config \(algo.group_size = 4 in the run, 8 now\)"):
        train(config(tmp_path, algo={"group_size": 8}), model, tok, task=letter_task())


def test_cli_resume_trains_on_to_more_steps(tmp_path, tiny_lm, capsys):
    model, tok = tiny_lm
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    common = ["--model.name", str(tmp_path / "tiny"), "--model.dtype", "fp32", "--sampler.max_new_tokens", "4"]
    common += [
        "--algo.prompts_per_step",
        "2",
        "--algo.group_size",
        "2",
        "--train.micro_batch_size",
        "4",
        "--run.quiet",
        "true",
    ]
    assert (
        main(
            [
                "train",
                *common,
                "--train.steps",
                "2",
                "--run.out_dir",
                str(tmp_path),
                "--run.name",
                "r",
                "--run.loggers",
                "",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), "--algo.group_size", "4"]) == 2  # refused as a config error
    assert "only --train.steps and --run.* may change, not --algo.group_size" in one_line_error(capsys)
    assert main(["train", "--resume", str(tmp_path / "r"), "--train.steps", "3"]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2, 3]
    assert latest_checkpoint(tmp_path / "r").name == "step-000003"


def test_a_second_signal_abandons_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_lm):
    model, tok = tiny_lm
    task = signalling_task(signal.SIGTERM, signal.SIGTERM)  # finish the step ... no: stop now
    with pytest.raises(
        Interrupted, match=r"abandoned step 2; the last checkpoint holds step 1; resume with: dashrl train --resume"
    ):
        train(config(tmp_path), model, tok, task=task)
    assert latest_checkpoint(tmp_path / "run").name == "step-000001"
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1]


def test_only_the_newest_checkpoint_keeps_the_optimizer_state_by_default(tmp_path, tiny_lm):
    from conftest import make_tiny_model

    model, tok = tiny_lm
    res = train(config(tmp_path, run={"keep_last": 0}), model, tok, task=letter_task())
    ckpts = sorted((res.run_dir / "checkpoints").glob("step-*"))
    assert [p.name for p in ckpts] == ["step-000001", "step-000002", "step-000003"]
    assert [(p / "trainer_state.pt").is_file() for p in ckpts] == [False, False, True]
    cfg = config(tmp_path, train={"steps": 4}, run={"keep_last": 0})
    res = train(cfg, make_tiny_model(len(tok)), tok, task=letter_task())  # resumes from the newest
    assert [r["step"] for r in res.rows] == [1, 2, 3, 4]
    assert [(p / "trainer_state.pt").is_file() for p in sorted((res.run_dir / "checkpoints").glob("step-*"))] == [
        False
    ] * 3 + [True]


def test_weights_only_checkpoints_are_never_overwritten_by_a_fresh_run(tmp_path, tiny_lm):
    from conftest import make_tiny_model

    model, tok = tiny_lm
    res = train(config(tmp_path, run={"keep_state": "none"}), model, tok, task=letter_task())
    assert not list(res.run_dir.rglob("trainer_state.pt"))
    before = (res.run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RunError, match="without trainer state .* cannot be resumed"):
        train(config(tmp_path, run={"keep_state": "none"}), make_tiny_model(len(tok)), tok, task=letter_task())
    assert (res.run_dir / "metrics.jsonl").read_text() == before


def test_a_run_that_died_before_its_first_checkpoint_is_refused_not_replaced(tmp_path, tiny_lm, capsys):
    """Steps logged, no checkpoint yet, stopped at once (a second signal): the hint offers no
    resume, and the same command again refuses in one line instead of wiping the logged rows."""
    from conftest import make_tiny_model

    model, tok = tiny_lm
    cfg = config(tmp_path, run={"save_every": 100})
    with pytest.raises(Interrupted) as err:
        train(cfg, model, tok, task=signalling_task(signal.SIGTERM, signal.SIGTERM))
    run_dir = tmp_path / "run"
    assert str(err.value).startswith(
        "abandoned step 2; no resumable checkpoint exists, so there is nothing to resume; to start over"
    )
    assert "--resume" not in str(err.value) and latest_checkpoint(run_dir) is None
    before = (run_dir / "metrics.jsonl").read_text()
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1]
    with pytest.raises(
        RunError, match=r"holds 1 logged step\(s\) but no checkpoint .* to start over, move it aside \(mv "
    ):
        train(cfg, make_tiny_model(len(tok)), tok, task=letter_task())
    assert (run_dir / "metrics.jsonl").read_text() == before
    capsys.readouterr()
    args = [
        "train",
        "--run.out_dir",
        str(tmp_path),
        "--run.name",
        "run",
        "--train.steps",
        "3",
        "--run.save_every",
        "100",
    ]
    assert main(args) == 1  # the CLI: one line, before any model loads
    assert f"run folder {run_dir} holds 1 logged step(s) but no checkpoint" in one_line_error(capsys)
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_the_resume_hint_names_the_step_a_resume_continues_with(tmp_path, tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(Interrupted) as err:
        train(config(tmp_path), model, tok, task=signalling_task(signal.SIGTERM, signal.SIGTERM))
    assert str(err.value).endswith(
        f"the last checkpoint holds step 1; resume with: dashrl train --resume {tmp_path / 'run'} "
        "(it continues with step 2)"
    )


def test_weights_only_checkpoints_offer_no_resume_on_a_signal(tmp_path, tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(Interrupted) as err:
        train(config(tmp_path, run={"keep_state": "none"}), model, tok, task=signalling_task(signal.SIGTERM))
    assert "stopped after step 2 of 3" in str(err.value) and "nothing to resume" in str(err.value)
    assert "--resume" not in str(err.value)


def test_a_second_signal_during_the_final_save_still_gives_the_hint(tmp_path, tiny_lm, monkeypatch):
    """The first Ctrl-C finishes the step and saves; an impatient second one lands in that save:
    the save is abandoned, the hint names the checkpoint a resume really continues from."""
    import dashrl.train.loop as loop

    model, tok = tiny_lm
    real = loop.save_checkpoint

    def save_checkpoint(run_dir, step, *args, **kwargs):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", save_checkpoint)
    with pytest.raises(Interrupted) as err:
        train(config(tmp_path), model, tok, task=signalling_task(signal.SIGTERM))
    assert str(err.value) == (
        f"abandoned the save of step 2; the last checkpoint holds step 1; "
        f"resume with: dashrl train --resume {tmp_path / 'run'} (it continues with step 2)"
    )
    assert latest_checkpoint(tmp_path / "run").name == "step-000001"
