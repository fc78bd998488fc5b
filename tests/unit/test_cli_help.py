"""Every config field is discoverable from the command line, and shipped run files load by name."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from dashrl.cli import main
from dashrl.config import Config, ConfigError, describe_fields, field_docs, find_config, load_config, shipped_configs


def test_config_show_lists_every_field_with_type_default_and_doc(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for sec in dataclasses.fields(Config):
        cls = sec.default_factory
        docs = field_docs(cls)
        assert f"[{sec.name}]" in out
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{sec.name}.{f.name} has no docstring"
            assert (
                f"--{sec.name}.{f.name} {f.type.upper() if isinstance(f.type, str) else f.type.__name__.upper()} = "
                in out
            )
            assert docs[f.name].split()[0] in out
    assert "--train.steps INT = 30" in out
    from dashrl.config import load_config

    assert f'--model.dtype STR = "{load_config(None, []).model.dtype}"' in out  # `auto` as this machine resolves it


def test_config_show_one_section_and_a_typo(capsys):
    assert main(["config", "--show", "eval"]) == 0
    out = capsys.readouterr().out
    assert "--eval.datasets" in out and "--train.steps" not in out
    assert main(["config", "--show", "evl"]) == 2
    assert "did you mean 'eval'" in capsys.readouterr().err


def test_train_help_names_every_section_and_how_to_see_fields():
    proc = subprocess.run([sys.executable, "-m", "dashrl.cli", "train", "--help"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    for sec in dataclasses.fields(Config):
        assert f"\n  {sec.name} " in proc.stdout
    assert "dashrl config --show" in proc.stdout and "dashrl/config.py" not in proc.stdout
    assert "tests_field" in proc.stdout and "micro_batch_by" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_shipped_run_files_load_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert set(shipped_configs()) >= {"quickstart", "gsm8k", "math", "grpo_baseline"}
    assert load_config("gsm8k").task.name == "gsm8k"
    assert load_config("configs/gsm8k.toml").task.name == "gsm8k"  # the README's old spelling
    assert load_config("quickstart.toml") == load_config()
    with pytest.raises(ConfigError, match="shipped run files: .*quickstart"):
        find_config("nosuch")


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gsm8k.toml").write_text("[train]\nsteps = 3\n")
    assert load_config("gsm8k.toml").train.steps == 3


def test_describe_fields_is_derived_from_the_dataclasses():
    text = describe_fields("task")
    assert '--task.tests_field STR = ""' in text
    assert "test program" in text


def test_help_and_config_listing_stay_light():
    code = (
        "import contextlib, io, sys\nfrom dashrl.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['config'])\n    main(['config', '--files'])\n"
        "    for cmd in ('train', 'eval'):\n"
        "        try:\n            main([cmd, '--help'])\n        except SystemExit:\n            pass\n"
        "bad = [m for m in ('torch', 'transformers', 'tqdm', 'numpy') if m in sys.modules]\nassert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_reader_that_leaves_early_is_no_traceback():
    """`dashrl config | head -3`: the pipe closes before the listing is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashrl.cli", "config"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader leaves before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_every_field_listing_fits_an_80_column_terminal():
    proc = subprocess.run([sys.executable, "-m", "dashrl.cli", "config", "--show"], capture_output=True, text=True,
                          check=True, env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    assert "[select]" in proc.stdout and max(len(line) for line in proc.stdout.splitlines()) <= 80
