"""`dashrl bench --sampling`: the roofline arithmetic, the table, the backend list."""

import pytest
from markdown_table import read_table, shows

from dashrl.bench.sampling import decode_roofline, sampling_backends, sampling_table


def test_decode_roofline_counts_weights_once_and_the_prompt_once_per_group():
    # 1 layer, 1 kv head of size 2, 1 query head; 4 rows of one prompt of 10 tokens, 3 generated so far
    r = decode_roofline(100, 1, 1, 2, 1, batch=4, group=4, prompt_len=10, completion_len=3, bytes_per_value=2)
    per_token = 2 * 1 * 1 * 2 * 2  # K and V, 1 layer, 1 head, D = 2, 2 bytes
    assert r["flops"] == 2 * 100 * 4 + 4 * 1 * 1 * 2 * 13 * 4
    assert r["weight_bytes"] == 200
    assert r["kv_bytes_plain"] == per_token * 13 * 4
    assert r["kv_bytes_shared"] == per_token * (10 + 3 * 4)  # one prompt copy, four completions


def test_sampling_table_has_ratios_to_the_first_backend_and_mfu():
    gaps = {"hf_plain": {"mean": 0.0123, "max": 0.25, "ratio_max_dev": 0.284}, "hf": {"mean": 0.01, "max": 0.1,
            "ratio_max_dev": 0.105}}  # fmt: skip
    rates = {"hf_plain": {8: 100.0, 64: 320.0}, "hf": {8: 250.0, 64: 400.0}}
    res = {n: {"startup_s": 1.0 + i, "sync_s": 0.1 * (i + 1), "tok_per_s": rates[n], "gap": gaps[n]}
           for i, n in enumerate(rates)}  # fmt: skip
    peak, n_params = 100.0, 10**8  # GFLOP/s; 2e8 FLOPs per sampled token
    cells = read_table(sampling_table(res, [8, 64], peak=peak, n_params=n_params))
    assert list(cells) == ["hf_plain", "hf"]
    for n, c in cells.items():
        assert shows(c["start-up s"], res[n]["startup_s"]) and shows(c["sync s"], res[n]["sync_s"])
        for b in (8, 64):
            assert shows(c[f"tok/s @{b}"], rates[n][b])
            assert shows(c[f"vs hf_plain @{b}"], rates[n][b] / rates["hf_plain"][b])  # the first row is the base
            assert shows(c[f"MFU @{b}"], 2 * n_params * rates[n][b] / (peak * 1e9))
        assert shows(c["mean abs dlogp"], gaps[n]["mean"]) and shows(c["max abs dlogp"], gaps[n]["max"])
        assert shows(c["max abs(ratio-1)"], gaps[n]["ratio_max_dev"])
    assert "MFU @8" not in sampling_table(res, [8])  # no peak given: no MFU columns


def test_sampling_backends_default_and_unknown_names(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert sampling_backends(None) == ["hf_plain", "hf", "hf_noshare", "hf_noprepack"]
    with pytest.raises(ValueError, match="valid"):
        sampling_backends("hf,hf_fast")
    with pytest.raises(ValueError, match="needs vLLM"):
        sampling_backends("hf,vllm")
