"""A loss by path (`--algo.loss file.py:Class`): the example in docs/algorithms.md runs through
the config and `make_loss` to a hand-computed value, and every bad path ends in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dashrl.algo import LossInputs, LossOutput, make_loss
from dashrl.algo.losses import loss_problem
from dashrl.algo.registry import LOSS_PATHS, LOSSES
from dashrl.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def doc_example() -> str:
    """The Python block of docs/algorithms.md's "Your own loss" section."""
    section = (ROOT / "docs" / "algorithms.md").read_text().split("## Your own loss", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def user_file(tmp_path: Path, text: str, name: str = "my_loss.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_documented_example_gives_the_hand_computed_loss_and_gradient(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    user_file(tmp_path, doc_example())
    algo = load_config(overrides=["--algo.loss", "my_loss.py:ClippedReinforce", "--algo.clip_eps", "0.5"]).algo
    assert algo.loss == f"{tmp_path.resolve() / 'my_loss.py'}:ClippedReinforce"  # absolute: found from any folder
    loss_fn = make_loss(algo.loss, **algo.hparams)
    assert (loss_fn.clip_eps, loss_fn.aggregation) == (0.5, "token-mean")  # built with the algo fields it names
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    out = LossOutput.of(loss_fn(LossInputs(lp, torch.zeros(2, 2), torch.tensor([2.0, -0.25]), mask)))
    # advantages clipped to [0.5, -0.25]; -A log p = 0.5, 1.0, -0.125 over 3 real tokens
    assert out.loss.item() == pytest.approx((0.5 + 1.0 - 0.125) / 3)
    out.loss.backward()
    assert torch.allclose(lp.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.0]]) / 3)  # -A / N per real token
    assert out.summed == {"loss/policy"} and loss_problem(algo) == ""


@pytest.mark.parametrize(
    "text, spec, expected",
    [
        (None, "{tmp}/missing.py:L", "config algo.loss '{tmp}/missing.py:L': no such file {tmp}/missing.py (expected "
                                     "path/to/file.py:Class or module:Class, a loss class)"),
        ("def f(:\n", "{tmp}/my_loss.py:L", "config algo.loss '{tmp}/my_loss.py:L': {tmp}/my_loss.py:1: "
                                             "syntax error: "),
        ("class M: pass\n", "{tmp}/my_loss.py:L", "config algo.loss '{tmp}/my_loss.py:L': {tmp}/my_loss.py "
                                                  "defines no 'L'"),
        (None, "no_such_pkg.losses:L", "config algo.loss 'no_such_pkg.losses:L': no module named 'no_such_pkg' ("),
        (None, "my_loss.py:", "config algo.loss 'my_loss.py:': expected path/to/file.py:name or module:name"),
        (None, "clipped", f"config algo.loss: expected one of {', '.join([*LOSSES, *LOSS_PATHS])}, got 'clipped'"),
    ],
)  # fmt: skip
def test_a_bad_path_is_one_config_line(tmp_path, text, spec, expected):
    if text is not None:
        user_file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["--algo.loss", spec.format(tmp=tmp_path)])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(expected.format(tmp=tmp_path)), msg


@pytest.mark.parametrize(
    "text, attr, expected",
    [
        ("L = 3\n", "L", "'L' is a int, expected a class (built with algo fields, called on a LossInputs)"),
        ("def L(x):\n    return x\n", "L", "'L' is a function, expected a class"),
        ("import no_such_module\nclass L: pass\n", "L", "importing {file} failed: ModuleNotFoundError"),
        ("class L:\n    def __init__(self, clip, beta):\n        pass\n", "L", "L asks for clip, which the algo"),
    ],
)
def test_what_only_the_import_finds_is_one_line_before_any_model_loads(tmp_path, text, attr, expected):
    file = user_file(tmp_path, text)
    algo = load_config(overrides=["--algo.loss", f"{file}:{attr}"]).algo  # the config does not import it
    problem = loss_problem(algo)
    assert problem.startswith(f"config algo.loss '{file}:{attr}': ") and "\n" not in problem, problem
    assert expected.format(file=file) in problem


def test_the_run_stops_on_a_bad_loss_before_the_model_loads(tmp_path, monkeypatch):
    from dashrl.train.loop import RunError, train

    file = user_file(tmp_path, "class L:\n    def __init__(self, nonsense):\n        pass\n")
    cfg = load_config(overrides=["--algo.loss", f"{file}:L", "--run.out_dir", str(tmp_path / "runs")])
    monkeypatch.setattr("dashrl.models.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(RunError, match="L asks for nonsense"):
        train(cfg)


def test_a_module_path_and_the_registered_names_resolve_alike():
    assert make_loss("dashrl.algo.losses:PGLoss", aggregation="seq-mean") == make_loss("pg", aggregation="seq-mean")


def test_one_training_step_with_the_documented_loss(tmp_path, tiny_lm):
    from conftest import tiny_config

    from dashrl.data import Example
    from dashrl.data.tasks import Task
    from dashrl.train.loop import train
    from dashrl.train.metrics import read_metrics

    model, tok = tiny_lm
    file = user_file(tmp_path, doc_example())
    task = Task(name="letters", get=lambda i: Example(id=str(i % 4), problem=f"Say a {i % 4}", answer="a"),
                size=None, reward=lambda ex, text: text.count("a") / max(len(text), 1))  # fmt: skip
    algo = {"loss": f"{file}:ClippedReinforce", "clip_eps": 0.5, "filter_threshold": -1.0}
    res = train(tiny_config(tmp_path, algo=algo, train={"steps": 1}), model, tok, task=task)
    row = read_metrics(res.run_dir / "metrics.jsonl")[0]
    assert row["step"] == 1 and row["grad_norm"] > 0 and "loss/policy" in row, row
