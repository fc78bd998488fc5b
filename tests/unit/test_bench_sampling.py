"""`dashrl bench --sampling`: the roofline arithmetic, the table, the backend list."""

import pytest

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
    gap = {"mean": 0.01, "max": 0.1, "ratio_max_dev": 0.105}
    res = {
        "hf_plain": {"startup_s": 1.0, "sync_s": 0.1, "tok_per_s": {8: 100.0}, "gap": gap},
        "hf": {"startup_s": 2.0, "sync_s": 0.2, "tok_per_s": {8: 250.0}, "gap": gap},
    }
    md = sampling_table(res, [8], peak=100.0, n_params=10**8)  # 2e8 FLOP per token
    assert "vs hf_plain @8" in md
    assert "| hf | 2.0 | 0.20 | 250 | 2.50x | 50.0% | 0.0100 | 0.100 | 0.105 |" in md


def test_sampling_backends_default_and_unknown_names(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert sampling_backends(None) == ["hf_plain", "hf", "hf_noshare", "hf_noprepack"]
    with pytest.raises(ValueError, match="valid"):
        sampling_backends("hf,hf_fast")
    with pytest.raises(ValueError, match="needs vLLM"):
        sampling_backends("hf,vllm")
