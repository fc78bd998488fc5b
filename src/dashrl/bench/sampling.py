"""`dashrl bench --sampling`: the sampler backends compared alone, on the same prompts.

The `hf` sampler's static decoder (with and without shared-prefix attention), its plain
transformers loop, and `vllm` when installed. Reported: sampled tokens/s at each `--batches` size,
the generate calls interleaved (the order rotating every repeat), their MFU, start-up and
weight-sync seconds, how far each backend's logprobs are from the trainer's recomputation, and a
roofline of one decode step (FLOPs and bytes against the measured matmul peak and copy bandwidth).
A Ctrl-C keeps the repeats that every backend finished at every batch size (exit status 130).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from dashrl.runtime.hardware import log, matmul_peak, memory_bandwidth

# Sampler backends `dashrl bench --sampling` compares: (registry backend, HFSampler settings).
# `hf` is the default sampler (static decoder); `hf_plain` the decode loop through the transformers
# model it replaced; `hf_noshare` the static decoder with one copy of the prompt's KV per row;
# `hf_noprepack` the static decoder with plain `F.linear` weights (no oneDNN reorder);
# `hf_compiled` the static decoder with its per-layer code compiled by torch.compile.
SAMPLING_BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "hf": ("hf", {}),
    "hf_plain": ("hf", {"decoder": "plain"}),
    "hf_noshare": ("hf", {"share_prefix": False}),
    "hf_noprepack": ("hf", {"prepack": False}),
    "hf_compiled": ("hf", {"compile": True}),
    "vllm": ("vllm", {}),
}


def logprob_gap(sampler_lps: list[list[float]], trainer_lps: list[list[float]]) -> dict[str, float]:
    """Mean and max |sampler - trainer| logprob over all tokens, and the implied ratio's
    largest distance from 1 (the PPO ratio of an on-policy sample).

    >>> logprob_gap([[-1.0, -2.0]], [[-1.0, -2.5]])["max"]
    0.5
    """
    diffs = [t - s for ss, ts in zip(sampler_lps, trainer_lps) for s, t in zip(ss, ts)]
    if not diffs:
        return {"mean": float("nan"), "max": float("nan"), "ratio_max_dev": float("nan")}
    return {
        "mean": sum(abs(d) for d in diffs) / len(diffs),
        "max": max(abs(d) for d in diffs),
        "ratio_max_dev": max(abs(math.exp(d) - 1) for d in diffs),
    }


def decode_roofline(
    n_params: int, layers: int, kv_heads: int, head_dim: int, heads: int, batch: int, group: int,
    prompt_len: float, completion_len: float, bytes_per_value: int = 2,
) -> dict[str, float]:  # fmt: skip
    """FLOPs and bytes of one decode step of `batch` rows (`batch / group` prompts), each row at
    `prompt_len + completion_len` positions: weights read once per step, every cached key and
    value read once, per row (`kv_bytes_plain`) or with one copy of a group's prompt
    (`kv_bytes_shared`). FLOPs: 2 per weight per row, plus QK and PV over the context.

    >>> r = decode_roofline(100, 1, 1, 2, 1, batch=4, group=4, prompt_len=10, completion_len=0, bytes_per_value=1)
    >>> r["flops"], r["weight_bytes"], r["kv_bytes_plain"], r["kv_bytes_shared"]
    (1120.0, 100.0, 160.0, 40.0)
    """
    per_token = 2 * layers * kv_heads * head_dim * bytes_per_value  # keys and values, every layer
    ctx = prompt_len + completion_len
    return {
        "flops": 2.0 * n_params * batch + 4.0 * layers * heads * head_dim * ctx * batch,
        "weight_bytes": float(n_params * bytes_per_value),
        "kv_bytes_plain": float(per_token * ctx * batch),
        "kv_bytes_shared": float(per_token * (prompt_len * batch / group + completion_len * batch)),
    }


def roofline_table(model_cfg: Any, n_params: int, group: int, prompt_len: float, completion_len: float,
                   batches: list[int], bandwidth: float, peak: float) -> str:  # fmt: skip
    """Markdown roofline of a decode step at each batch size: bytes and FLOPs, and the tokens/s bound."""
    lines = ["| batch | GFLOP/step | MB weights | MB KV per row | MB KV shared | compute-bound tok/s | memory-bound "
             "tok/s (per row / shared) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for b in batches:
        head_dim = getattr(model_cfg, "head_dim", None) or model_cfg.hidden_size // model_cfg.num_attention_heads
        r = decode_roofline(n_params, model_cfg.num_hidden_layers, model_cfg.num_key_value_heads, head_dim,
                            model_cfg.num_attention_heads, b, group, prompt_len, completion_len)  # fmt: skip
        mem = [b / ((r["weight_bytes"] + r[k]) / (bandwidth * 1e9)) for k in ("kv_bytes_plain", "kv_bytes_shared")]
        lines.append(
            f"| {b} | {r['flops'] / 1e9:.1f} | {r['weight_bytes'] / 1e6:.0f} | {r['kv_bytes_plain'] / 1e6:.0f} | "
            f"{r['kv_bytes_shared'] / 1e6:.0f} | {b / (r['flops'] / (peak * 1e9)):.0f} | {mem[0]:.0f} / {mem[1]:.0f} |"
        )
    return "\n".join(lines)


def sampling_table(
    results: dict[str, dict[str, Any]], batches: list[int], peak: float | None = None, n_params: int = 0
) -> str:
    """Markdown table of the sampler backends, tokens/s ratios against the first row (the base)."""
    base = next(iter(results))
    mfu = peak is not None and n_params > 0
    head = ("| backend | start-up s | sync s | " + "".join(f"tok/s @{b} | vs {base} @{b} | " for b in batches)
            + ("".join(f"MFU @{b} | " for b in batches) if mfu else "")
            + "mean abs dlogp | max abs dlogp | max abs(ratio-1) |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        rates = "".join(
            f"{r['tok_per_s'][b]:.0f} | {r['tok_per_s'][b] / results[base]['tok_per_s'][b]:.2f}x | " for b in batches
        )
        if mfu:
            rates += "".join(f"{2 * n_params * r['tok_per_s'][b] / (peak * 1e9):.1%} | " for b in batches)
        g = r["gap"]
        lines.append(
            f"| {name} | {r['startup_s']:.1f} | {r['sync_s']:.2f} | {rates}{g['mean']:.4f} | {g['max']:.3f} | "
            f"{g['ratio_max_dev']:.3f} |"
        )
    return "\n".join(lines)


def sampling_backends(spec: str | None) -> list[str]:
    """The backends to compare: the base first; vllm by default only when installed."""
    vllm = importlib.util.find_spec("vllm") is not None
    if spec is None:
        if not vllm:
            log("vLLM is not installed: measuring the hf decoders alone")
        return ["hf_plain", "hf", "hf_noshare", "hf_noprepack"] + (["vllm"] if vllm else [])
    names = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in names if v not in SAMPLING_BACKENDS]
    if unknown or not names:
        raise ValueError(f"unknown sampling backend(s) {unknown}; valid: {sorted(SAMPLING_BACKENDS)}")
    if "vllm" in names and not vllm:
        raise ValueError("the vllm backend needs vLLM (see docs/backends.md)")
    return names


def start_samplers(
    names: list[str], model: Any, tok: Any, cfg: Any, rows: dict[int, list[list[int]]], batches: list[int]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Each backend's sampler, and its results so far: start-up seconds (a first short call at the
    smallest batch included: it compiles), the median of three weight syncs, and token and second
    counts at zero for each batch size."""
    from dashrl.rollout import make_sampler, sampling_params

    samplers: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for n in names:
        backend, settings = SAMPLING_BACKENDS[n]
        t0 = time.perf_counter()
        samplers[n] = make_sampler(
            backend,
            model=model,
            tokenizer=tok,
            dtype=cfg.model.dtype,
            **{k: v for k, v in settings.items() if k == "decoder"},
        )
        for k, v in settings.items():
            if k != "decoder":
                setattr(samplers[n], k, v)
        warm = sampling_params(cfg, max_new_tokens=8, batch_size=min(batches))
        samplers[n].generate(rows[min(batches)], warm, seed=0)  # start-up includes a first short call (compiles)
        startup = time.perf_counter() - t0
        syncs = []
        for _ in range(3):
            t0 = time.perf_counter()
            samplers[n].load_weights(model.state_dict())
            syncs.append(time.perf_counter() - t0)
        results[n] = {
            "startup_s": startup,
            "sync_s": sorted(syncs)[1],
            "tokens": {b: 0 for b in batches},
            "seconds": {b: 0.0 for b in batches},
        }
        log(f"{n}: start-up {startup:.1f}s, sync {results[n]['sync_s']:.2f}s")
    return samplers, results


def time_generate(
    samplers: dict[str, Any], rows: dict[int, list[list[int]]], batches: list[int], cfg: Any, repeats: int,
    results: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], int]:  # fmt: skip
    """`repeats` rounds of generate calls at every batch size, the backends' order rotating each
    round; each backend's tokens and seconds added to `results`. Returns the largest batch's last
    completions per backend and the rounds that every backend finished (a Ctrl-C keeps only those)."""
    from dashrl.rollout import sampling_params

    names = list(samplers)
    last: dict[str, Any] = {}
    done = 0
    try:
        for rep in range(repeats):
            this: dict[str, dict[int, tuple[int, float]]] = {n: {} for n in names}
            for b in batches:
                params = sampling_params(cfg, batch_size=b)
                for n in names[rep % len(names) :] + names[: rep % len(names)]:  # the order rotates
                    t0 = time.perf_counter()
                    out = samplers[n].generate(rows[b], params, seed=rep)
                    dt = time.perf_counter() - t0
                    ntok = sum(len(c.token_ids) for c in out)
                    this[n][b] = (ntok, dt)
                    if b == max(batches):
                        last[n] = out
                    log(f"repeat {rep + 1}/{repeats} batch {b} {n}: {ntok} tokens in {dt:.1f}s ({ntok / dt:.0f} tok/s)")
            for n in names:
                for b, (ntok, dt) in this[n].items():
                    results[n]["tokens"][b] += ntok
                    results[n]["seconds"][b] += dt
            done = rep + 1
    except KeyboardInterrupt:
        if done:
            log(f"interrupted in repeat {done + 1}: keeping the {done} repeat(s) that every backend finished")
    return last, done


def trainer_logprobs(model: Any, tok: Any, cfg: Any, prompts: list[list[int]], out: list[Any]) -> list[list[float]]:
    """The trainer's recomputation of the logprobs of the completions `out` of `prompts`."""
    import torch

    from dashrl.models import autocast_ctx
    from dashrl.train.learner import Sample, collate
    from dashrl.train.logprobs import completion_logprobs

    G, mbs = cfg.algo.group_size, cfg.train.micro_batch_size
    samples = [
        Sample(list(p), c.token_ids, c.logprobs, 0.0, 1.0, i // G, c.finish_reason)
        for i, (p, c) in enumerate(zip(prompts, out))
    ]
    lps = []
    for i in range(0, len(samples), mbs):
        mb = collate(samples[i : i + mbs], tok.pad_token_id or 0)
        with torch.no_grad(), autocast_ctx(model, cfg.model.dtype):
            lp = completion_logprobs(model, mb, cfg.sampler.temperature or 1.0)
        lps += [lp[j, : len(s.completion_ids)].tolist() for j, s in enumerate(samples[i : i + mbs])]
    return lps


def sampling_run(args: argparse.Namespace, workload: list[str]) -> int:
    """`dashrl bench --sampling`: the sampler backends, generate calls interleaved on the same prompts."""
    from dashrl.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, workload + list(args.overrides))
        batches = [int(b) for b in args.batches.split(",")]
        if any(b % cfg.algo.group_size for b in batches):
            raise ValueError(f"--batches must be multiples of G = {cfg.algo.group_size}")
        names = sampling_backends(args.backends)
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2

    from dashrl.data.prompts import build_prompt
    from dashrl.data.tasks import make_task
    from dashrl.models import load_model
    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()  # the bench prints its own lines
    peak = matmul_peak("bf16")
    bandwidth = memory_bandwidth()
    log(f"matmul peak bf16 {peak:.0f} GFLOP/s, memory bandwidth {bandwidth:.1f} GB/s (copy)")
    model, tok = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    G = cfg.algo.group_size
    examples = make_task(cfg.task, cfg.train.seed).batch(0, max(batches) // G)
    rows = {b: [build_prompt(tok, ex) for ex in examples[: b // G] for _ in range(G)] for b in batches}
    samplers, results = start_samplers(names, model, tok, cfg, rows, batches)
    last, done = time_generate(samplers, rows, batches, cfg, args.repeats, results)
    if not done and args.repeats:
        print(
            "dashrl bench: interrupted before every backend finished a repeat; nothing measured, nothing written",
            file=sys.stderr,
        )
        return 130
    for n in names:  # the trainer's recomputation of the largest batch's last samples
        trainer_lps = trainer_logprobs(model, tok, cfg, rows[max(batches)], last[n])
        results[n]["gap"] = logprob_gap([c.logprobs for c in last[n]], trainer_lps)
        results[n]["tok_per_s"] = {b: results[n]["tokens"][b] / max(results[n]["seconds"][b], 1e-9) for b in batches}
    text, payload = sampling_report(args, cfg, model, results, rows, batches, last[names[0]], done, peak, bandwidth)
    write_report(Path(args.out), "sampling", text, payload)
    print(text)
    return 0 if done == args.repeats else 130


def sampling_report(
    args: argparse.Namespace, cfg: Any, model: Any, results: dict[str, dict[str, Any]], rows: dict[int, list],
    batches: list[int], first_out: list[Any], done: int, peak: float, bandwidth: float,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The header, the backends' table and the decode roofline as markdown, and the JSON payload
    (`first_out`: the first backend's completions of the largest batch, for the mean lengths)."""
    import torch

    sc, G = cfg.sampler, cfg.algo.group_size
    n_params = sum(p.numel() for p in model.parameters())
    big = rows[max(batches)]
    prompt_len = sum(len(p) for p in big) / len(big)
    completion_len = sum(len(c.token_ids) for c in first_out) / len(big) / 2  # the mean position a step decodes at
    header = (
        f"Sampler backends on {cfg.model.name} ({cfg.model.dtype}), task {cfg.task.name}, G={G}, "
        f"max_new_tokens={sc.max_new_tokens}, T={sc.temperature}, {done} interleaved calls per backend and batch; "
        f"torch threads {torch.get_num_threads()}; matmul peak bf16 {peak:.0f} GFLOP/s, copy bandwidth {bandwidth:.1f} "
        f"GB/s; mean prompt {prompt_len:.0f} tokens, mean completion {2 * completion_len:.0f} tokens."
    )
    if done < args.repeats:
        header += f" Interrupted (Ctrl-C): {done} of {args.repeats} repeats measured."
    md = sampling_table(results, batches, peak, n_params)
    roof = roofline_table(model.config, n_params, G, prompt_len, completion_len, batches, bandwidth, peak)
    text = (
        f"{header}\n\n{md}\n\n"
        f"Roofline of one decode step (bf16, at the mean position {prompt_len + completion_len:.0f}):\n\n{roof}\n"
    )
    return text, {"workload": header, "peak_gflops": peak, "bandwidth_gbs": bandwidth, "results": results}


def write_report(out_dir: Path, stem: str, text: str, payload: dict[str, Any]) -> None:
    """`stem.md` and `stem.json` in `out_dir`, each written whole (`dashrl.runtime.io`)."""
    from dashrl.runtime.io import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{stem}.md", text)
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(payload, indent=1, default=str))
