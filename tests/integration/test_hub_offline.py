"""Hub names with no network and nothing cached fail in one line, before any model loads.

Each case runs `dashrl` in a subprocess with an empty Hugging Face home and either
HF_HUB_OFFLINE=1 or an endpoint on loopback that refuses connections (127.0.0.1:9), so
nothing here can reach the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("datasets")

UNREACHABLE = {
    "offline": ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
    "refused": ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "http://127.0.0.1:9 cannot be reached (offline?)"),
}


def dashrl(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE")}
    full.update(env, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.run(
        [sys.executable, "-m", "dashrl.cli", *args], env=full, capture_output=True, text=True, timeout=300
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("how", sorted(UNREACHABLE))
@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_uncached_hub_dataset_without_a_hub_is_one_line_before_the_model(tmp_path, how, command):
    env, reason = UNREACHABLE[how]
    no_model = str(tmp_path / "no-model")  # loading it would fail with another message: the dataset is checked first
    if command == "train":
        args = [
            "train",
            "--task.name",
            "hf:dashrl-tests/never-uploaded",
            "--model.name",
            no_model,
            "--run.out_dir",
            str(tmp_path / "runs"),
        ]
    else:
        args = ["eval", "--dataset", "hf:dashrl-tests/never-uploaded", "--model", no_model]
    proc = dashrl(tmp_path, env, *args)
    assert proc.returncode == 1
    assert one_line(proc) == (
        f"dashrl: hf:dashrl-tests/never-uploaded: the dataset is not in the local Hugging Face cache and {reason}; "
        "download it on a machine with access, or save it as a .jsonl file and pass its path"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("how", sorted(UNREACHABLE))
def test_an_uncached_hub_model_without_a_hub_is_one_line(tmp_path, how):
    env, reason = UNREACHABLE[how]
    proc = dashrl(
        tmp_path, env, "eval", "--model", "dashrl-tests/never-uploaded", "--dataset", "arithmetic", "--limit", "1"
    )
    assert proc.returncode == 1
    assert one_line(proc).startswith(
        f"dashrl: model 'dashrl-tests/never-uploaded' is not in the local Hugging Face cache and {reason}; "
    )


def test_a_model_name_that_is_no_folder_and_no_hub_id_is_one_line(tmp_path):
    env, _ = UNREACHABLE["refused"]
    proc = dashrl(tmp_path, env, "eval", "--model", "my model", "--dataset", "arithmetic", "--limit", "1")
    assert proc.returncode == 1
    assert one_line(proc) == "dashrl: model 'my model' is neither a local model folder nor a hub id (owner/name)"
