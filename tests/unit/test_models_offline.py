"""A hub model that cannot be fetched fails at once, in one line, without any network access
(the connection, the cache and transformers are all mocked)."""

from __future__ import annotations

import socket

import pytest

import dashrl.models as models


@pytest.fixture
def hub(monkeypatch):
    """No network: every connection is refused; record what transformers was asked to load."""
    state = {"cached": None, "calls": [], "offline": False}

    def refuse(*a, **k):
        state["calls"].append(("connect", a[0]))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name, **k: state["cached"])
    monkeypatch.setattr("huggingface_hub.constants.is_offline_mode", lambda: state["offline"])

    def from_pretrained(path, **kwargs):
        state["calls"].append(("load", path, kwargs.get("local_files_only", False)))
        raise OSError("not really loading")

    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    return state


def test_unreachable_hub_and_uncached_model_fails_before_transformers_tries(hub):
    with pytest.raises(models.ModelError, match="not in the local Hugging Face cache and .* cannot be reached"):
        models.load_model("someone/some-model")
    assert [c[0] for c in hub["calls"]] == ["connect"]  # one probe, no retries, transformers never called


def test_hf_hub_offline_fails_without_even_a_probe(hub):
    hub["offline"] = True
    with pytest.raises(models.ModelError, match="HF_HUB_OFFLINE is set"):
        models.load_model("someone/some-model")
    assert hub["calls"] == []


def test_a_cached_model_loads_from_the_cache_only_when_offline(hub):
    hub["cached"] = "/cache/someone/some-model/config.json"
    with pytest.raises(models.ModelError, match="could not load model"):  # our fake from_pretrained refuses
        models.load_model("someone/some-model")
    assert hub["calls"][-1] == ("load", "someone/some-model", True)


def test_cli_prints_one_line(hub, capsys, tmp_path):
    from dashrl.cli import main

    assert main(["train", "--model.name", "someone/some-model", "--run.out_dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("dashrl: model 'someone/some-model' is not in the local Hugging Face cache") and "\n" not in err
    )
    assert not (tmp_path / "runs").exists()
