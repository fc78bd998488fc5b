"""`model.dtype = auto` (the default): bf16 where the machine computes it natively, fp32 on a CPU
that would emulate it, chosen once and kept in the run's config so a resumed run computes as it began."""

from __future__ import annotations

import pytest

import dashrl.runtime.kernels as kernels
from dashrl.config import load_config


@pytest.mark.parametrize(
    "flags,gpu,want",
    [
        ({"avx2", "fma"}, False, "fp32"),  # AMD Zen 2/3, most laptops: bf16 would be emulated
        ({"avx2", "avx512f", "avx512_bf16"}, False, "bf16"),  # AMD Zen 4, Intel Cooper Lake
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, False, "bf16"),  # Intel Sapphire Rapids and later
        ({"fp", "asimd", "bf16"}, False, "bf16"),  # Arm with the bf16 extension (cpuinfo's Features)
        ({"avx2"}, True, "bf16"),  # a visible NVIDIA GPU
    ],
)
def test_auto_resolves_by_the_machine(monkeypatch, flags, gpu, want):
    monkeypatch.setattr(kernels, "_cpuinfo", lambda: ("cpu", flags))
    monkeypatch.setattr(kernels, "gpu_visible", lambda: gpu)
    assert load_config(None, []).model.dtype == want
    assert load_config("quickstart", []).model.dtype == want  # the shipped configs say auto too
    assert load_config(None, ["--model.dtype", "bf16"]).model.dtype == "bf16"  # an explicit choice stands


def test_the_run_keeps_the_dtype_it_chose(monkeypatch, tmp_path):
    from dashrl.config import to_dict, to_toml

    monkeypatch.setattr(kernels, "_cpuinfo", lambda: ("cpu", {"avx2"}))
    monkeypatch.setattr(kernels, "gpu_visible", lambda: False)
    cfg = load_config(None, [])
    assert cfg.model.dtype == "fp32" and to_dict(cfg)["model"]["dtype"] == "fp32"
    (tmp_path / "config.toml").write_text(to_toml(cfg))
    monkeypatch.setattr(kernels, "_cpuinfo", lambda: ("cpu", {"avx512_bf16"}))  # resumed elsewhere
    assert load_config(str(tmp_path / "config.toml"), []).model.dtype == "fp32"
