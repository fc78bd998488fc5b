"""`[env]` in the config, the CLI and the Python API: bad input is one line before any model loads; the
shipped environment and a user's class by path resolve to the same checked spec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashrl.config import ConfigError, load_config
from dashrl.env.loading import env_spec

SRC = str(Path(__file__).resolve().parents[2] / "src")

GOOD = (
    "class MyEnv:\n"
    "    def reset(self, **row):\n        self.n = 0\n"
    "    def bump(self, k: int) -> int:\n        '''Bump.\n\n        Args:\n            k: by how much\n        '''\n"
    "        self.n += k\n        return self.n\n"
    "def echo(text: str) -> str:\n    '''Echo.\n\n    Args:\n        text: what to echo\n    '''\n    return text\n"
)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["--env.name", "calculater"], "config env.name: unknown environment 'calculater'; did you mean 'calculator'?"),
        (["--env.factory", "nope.py:E"], "config env.factory 'nope.py:E': no such file nope.py"),
        (["--env.tools", "a.py:f,,b.py:g"], "config env.tools: expected comma-separated path:function entries"),
        (["--env.max_turns", "0"], "config env.max_turns: expected >= 1, got 0"),
        (["--env.name", "calculator", "--env.factory", "os:path"], "config env.name: give env.name or env.factory"),
    ],
)
def test_bad_env_settings_are_one_config_line(overrides, expected):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=overrides)
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


def test_paths_are_made_absolute_and_load_to_a_checked_spec(tmp_path, monkeypatch):
    (tmp_path / "my_env.py").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides=["--env.factory", "my_env.py:MyEnv", "--env.tools", "my_env.py:echo"]).env
    assert cfg.factory == f"{tmp_path / 'my_env.py'}:MyEnv" and cfg.enabled
    spec = env_spec(cfg)
    assert spec.name == "MyEnv" and [f.__name__ for f in spec.tools] == ["echo"]
    shipped = env_spec(load_config(overrides=["--env.name", "calculator"]).env)
    assert shipped.name == "Calculator"
    assert env_spec(load_config().env) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("class MyEnv:\n    pass\n", "environment MyEnv: no reset(**row) method"),
        ("class MyEnv:\n    def reset(self): pass\n    def go(self, x): '''Go.'''\n", "tool MyEnv.go: argument x has"),
        (
            "class MyEnv:\n    def __init__(self, a): pass\n    def reset(self): pass\n",
            "environment MyEnv: constructing",
        ),
        ("import no_such_module\nclass MyEnv: pass\n", "importing"),
        ("class MyEnv:\n    def reset(self, question): pass\n", "environment MyEnv: reset needs 'question', which"),
    ],
)
def test_the_run_stops_on_a_bad_environment_before_the_model_loads(tmp_path, monkeypatch, text, expected):
    from dashrl.train.loop import RunError, train

    (tmp_path / "my_env.py").write_text(text)
    cfg = load_config(overrides=["--env.factory", f"{tmp_path}/my_env.py:MyEnv", "--run.out_dir", str(tmp_path)])
    monkeypatch.setattr("dashrl.models.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(RunError) as e:
        train(cfg)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_the_cli_prints_one_line_for_a_bad_environment(tmp_path):
    (tmp_path / "my_env.py").write_text("class MyEnv:\n    pass\n")
    code = (
        "import sys\nfrom dashrl.cli import main\n"
        f"rc = main(['train', '--env.factory', '{tmp_path}/my_env.py:MyEnv', '--run.out_dir', '{tmp_path}'])\n"
        "print(rc, 'transformers' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip().split()[0] != "0", proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].endswith("environment MyEnv: no reset(**row) method"), proc.stderr


def test_the_python_api_takes_a_class_and_tools(tmp_path, tiny_lm):
    import dashrl
    from dashrl.train.loop import RunError

    ns: dict = {}
    exec(GOOD, ns)  # noqa: S102 - the user's module, as objects
    model, tok = tiny_lm
    overrides = {"model.dtype": "fp32", "sampler.max_new_tokens": 4, "algo.prompts_per_step": 2,
                 "algo.group_size": 2, "train.steps": 1, "train.micro_batch_size": 4, "run.out_dir": str(tmp_path),
                 "run.quiet": True}  # fmt: skip
    res = dashrl.train(overrides, model=model, tokenizer=tok, environment_factory=ns["MyEnv"], tools=[ns["echo"]])
    row = res.rows[-1]
    assert "env/tool_calls" in row and row["env/turns"] == 1.0
    assert res.source.host.env.name == "MyEnv"

    class NoReset:
        pass

    with pytest.raises(RunError, match="^environment NoReset: no reset"):
        dashrl.train(overrides, model=model, tokenizer=tok, environment_factory=NoReset)
