"""`--model.chat_template FILE`: a template that replaces the model's own, checked at config time
and applied to every tokenizer dashrl loads (and to one given in Python)."""

from __future__ import annotations

import pytest

from conftest import make_tiny_model, make_tokenizer, tiny_config

from dashrl.config import ConfigError, load_config

TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }};{% endfor %}"
    "{% if add_generation_prompt %}[a]{% endif %}"
)


def test_missing_template_file_is_one_config_line(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.chat_template.*no such file: .*nope\.jinja"):
        load_config(None, ["--model.chat_template", str(tmp_path / "nope.jinja")])


def test_template_file_replaces_the_models_own(tmp_path, model_dir):
    from dashrl.data.prompts import render_messages
    from dashrl.models import load_model

    path = tmp_path / "t.jinja"
    path.write_text(TEMPLATE)
    cfg = load_config(None, ["--model.chat_template", str(path)])
    assert cfg.model.chat_template == str(path.resolve())
    _, tok = load_model(model_dir, chat_template=cfg.model.chat_template)
    assert render_messages(tok, [{"role": "user", "content": "2+2?"}]) == "[user] 2+2?;[a]"
    _, own = load_model(model_dir)
    assert render_messages(own, [{"role": "user", "content": "2+2?"}]) == "<user>2+2?\n<assistant>"


def test_a_tokenizer_given_in_python_takes_the_template(tmp_path):
    from dashrl.train.loop import prepare_run

    path = tmp_path / "t.jinja"
    path.write_text(TEMPLATE)
    tok = make_tokenizer()
    cfg = tiny_config(tmp_path, model={"chat_template": str(path)})
    _, got, _ = prepare_run(cfg, make_tiny_model(len(tok)), tok, None)
    assert got.chat_template == TEMPLATE
