"""`dashrl bench --backprop`: the trainer's backprop levers timed side by side on one batch.

One batch of M x G samples is drawn once (the workload's sampler settings), then every
variant backprops that same batch through the same model, the variants interleaved with the
order rotating (machine noise hits all alike), with an untimed warm-up pass each:

- `padded`: the shared-prompt pass over padded micro-batches (a group's prompt once, its KV
  reused for the G completions) with the model's own LM head: the former default;
- `head_chunk`: the same with `--train.head_chunk 1024` (the LM head applied 1024 rows at a time,
  no `[tokens, vocab]` logits kept for backward);
- `packed`: `--train.packed true` (a micro-batch as one row without padding);
- `packed_chunk`: both, one packed pass per micro-batch (`--train.pass_tokens 1`);
- `joined`: `packed_chunk` with consecutive micro-batches joined into passes of up to
  `train.pass_tokens` tokens, from the model's shape (the default now);
- `cast_each`: `packed_chunk` with `--train.cast_once false` (the bf16 casts of the weights made
  once per micro-batch, as before, instead of once per step);
- `one_pass`: `packed_chunk` with the whole batch in one packed pass (fewer, larger products and
  the LM head's and embedding's per-pass costs paid once), at the cost of its activations' memory;
- `plain`: every sample's prompt run again (`--train.share_prompts false`, padded): the same
  function as `padded`, computed another way, so its gradient distance from `padded` is the
  bf16 rounding floor that the other levers' distances are read against.

For each: seconds per backprop of the batch, trained tokens/s (the `padded` pass's token count,
every sample's prompt and completion, so every variant is credited with the same work), the
ratio to `padded`, two MFUs against the bf16 matmul peak measured in the same run, each the FLOPs
of a packed pass (`dashrl.runtime.flops.pass_flops`: the body at every position, the LM head at
completion positions, attention by the sequences' lengths) per second: one over every sample's own
prompt and completion (the counted tokens), one over the batch as it needs the least (each group's
prompt once, every completion), which does not credit prompt sharing as work done (with a KL term,
the reference model's forward is added to both); and how far its gradient is
from `padded`'s (relative norm of the difference: bf16 rounding, not an error, when it is near
`plain`'s). The samples' advantages are set to +1 and -1 in turn, so that every one carries gradient.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

# variant -> the train.* fields it sets (every lever explicit: the config's defaults do not leak in)
BASE = "padded"
ONE_PASS = -1  # micro_batch_size: the whole batch (every group) in one packed pass
LEVERS: dict[str, dict[str, Any]] = {
    BASE: {"packed": False, "head_chunk": 0, "share_prompts": True},
    "head_chunk": {"packed": False, "head_chunk": 1024, "share_prompts": True},
    "packed": {"packed": True, "head_chunk": 0, "pass_tokens": 1},
    "packed_chunk": {"packed": True, "head_chunk": 1024, "pass_tokens": 1},
    "joined": {"packed": True, "head_chunk": 1024, "pass_tokens": 0},
    "plain": {"packed": False, "head_chunk": 0, "share_prompts": False},
    "cast_each": {"packed": True, "head_chunk": 1024, "cast_once": False, "pass_tokens": 1},
    "one_pass": {"packed": True, "head_chunk": 1024, "micro_batch_size": ONE_PASS, "pass_tokens": 1},
}


def grad_vector(model: Any) -> Any:
    """Every parameter's gradient as one fp32 vector (zeros where a parameter has none)."""
    import torch

    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten() for p in model.parameters()]
    )


def backprop_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of the variants' timings, ratios to `padded` and gradient gaps.

    >>> r = {"padded": {"seconds": 2.0, "tok_per_s": 500.0, "mfu": 0.1, "mfu_needed": 0.05, "grad_rel": 0.0,
    ...                 "loss": 0.5},
    ...      "packed": {"seconds": 1.0, "tok_per_s": 1000.0, "mfu": 0.2, "mfu_needed": 0.1, "grad_rel": 0.01,
    ...                 "loss": 0.5}}
    >>> print(backprop_table(r).splitlines()[-1])
    | packed | 1.00 | 1000 | 2.00x | 20.0% | 10.0% | 0.0100 | 0.5000 |
    """
    base = results[BASE]["seconds"] if BASE in results else None
    lines = [
        f"| variant | s / backprop | trained tok/s | vs {BASE} | MFU (counted tokens) | MFU (prompt once per group) | "
        "grad rel. diff | loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ratio = f"{base / r['seconds']:.2f}x" if base else "-"
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['tok_per_s']:.0f} | {ratio} | {100 * r['mfu']:.1f}% | "
            f"{100 * r['mfu_needed']:.1f}% | {r['grad_rel']:.4f} | {r['loss']:.4f} |"
        )
    return "\n".join(lines)


def lever_names(spec: str | None) -> list[str]:
    """The levers of `--levers` (default: all), `padded` first when it is not named: the others are read against it.

    >>> lever_names("packed,joined")
    ['padded', 'packed', 'joined']
    """
    names = [n.strip() for n in (spec or ",".join(LEVERS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise ValueError(f"--levers: unknown {unknown[0]!r}; valid: {', '.join(LEVERS)}")
    return names if BASE in names else [BASE, *names]


def backprop_run(args: argparse.Namespace, workload: list[str]) -> int:
    """Run the backprop A/B; the table on stdout, `backprop.md` and `backprop.json` in `--out`."""
    from dashrl.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, workload + list(args.overrides))
        names = lever_names(args.levers)
    except (ConfigError, ValueError) as e:
        print(f"dashrl bench: {e}", file=sys.stderr)
        return 2

    from dashrl.models import load_model
    from dashrl.algo.advantages import full_norm
    from dashrl.runtime.hardware import matmul_peak
    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()  # the bench prints its own lines
    peak = matmul_peak("bf16")
    model, tok = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    sources, trainers = lever_trainers(cfg, names, model, tok)
    samples = sample_batch(sources[BASE], cfg)
    norm = full_norm(samples, cfg.sampler.max_new_tokens)
    grads, seconds, outs, done = time_levers(trainers, model, samples, norm, args.repeats)
    if not done and args.repeats:
        print(
            "dashrl bench: interrupted before every lever finished a timed pass; nothing measured, nothing written",
            file=sys.stderr,
        )
        return 130
    model.zero_grad(set_to_none=True)
    tokens = outs[BASE]["train/tokens"]
    needed = sum(len(p) for p in {s.group: s.prompt_ids for s in samples}.values()) + sum(
        len(s.completion_ids) for s in samples
    )
    flops = batch_flops(model.config, samples, cfg.algo.beta > 0)
    results = {}
    for n in names:
        s = sorted(seconds[n])[len(seconds[n]) // 2]  # the upper median repeat (of 2: the slower)
        results[n] = lever_figures(s, tokens, flops, peak, grads[n], grads[BASE])
        results[n] |= {"pass": trainers[n].logprob_pass, "grad_norm": float(grads[n].norm()), "loss": outs[n]["loss"]}
    header = backprop_header(cfg, len(samples), tokens, needed, done, args.repeats, peak)
    text = f"{header}\n\n{backprop_table(results)}\n"
    write_backprop(
        Path(args.out),
        text,
        {
            "workload": header,
            "peak_gflops": peak,
            "flops": dict(zip(("own_prompts", "prompt_once"), flops)),
            "results": results,
            "seconds": seconds,
        },
    )
    print(text)
    return 0 if done == args.repeats else 130


def lever_trainers(cfg: Any, names: list[str], model: Any, tok: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One rollout source and one learner per lever, all over the same `model`, each with the lever's
    `train.*` fields."""
    from dashrl.train.loop import local_backend

    def levers(n: str) -> dict[str, Any]:
        ls = dict(LEVERS[n])
        if ls.get("micro_batch_size") == ONE_PASS:
            ls["micro_batch_size"] = cfg.algo.samples_per_step
        return ls

    backends = {n: local_backend(replace(cfg, train=replace(cfg.train, **levers(n))), model, tok, 1) for n in names}
    return {n: b[0] for n, b in backends.items()}, {n: b[1] for n, b in backends.items()}


def sample_batch(source: Any, cfg: Any) -> list[Any]:
    """One step's M x G samples, their advantages set to +1 and -1 in turn: every sample then carries
    gradient, so the gradient check means something even where the model solves nothing (the work
    does not depend on their values)."""
    from dashrl.runtime.hardware import log

    t0 = time.perf_counter()
    samples = source.rollout(source.task.batch(0, cfg.algo.prompts_per_step), seed=0).samples
    log(f"sampled {len(samples)} samples in {time.perf_counter() - t0:.1f}s "
        f"({sum(len(s.completion_ids) for s in samples) / len(samples):.0f} completion tokens on average)")  # fmt: skip
    return [replace(s, advantage=1.0 if i % 2 == 0 else -1.0) for i, s in enumerate(samples)]


def time_levers(
    trainers: dict[str, Any], model: Any, samples: list[Any], norm: Any, repeats: int
) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, dict[str, float]], int]:
    """Every lever's backprop of the batch, the levers interleaved with the order rotating: pass 0
    warms up and records each lever's gradient, passes 1..`repeats` are timed. Returns the gradients,
    the timed seconds, each lever's last backprop figures and the repeats that every lever finished
    (a Ctrl-C keeps only those)."""
    from dashrl.runtime.hardware import log

    names = list(trainers)
    grads: dict[str, Any] = {}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    outs: dict[str, dict[str, float]] = {}
    done = 0
    try:
        for rep in range(repeats + 1):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for n in order:
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                outs[n] = trainers[n].backprop(samples, norm)
                dt = time.perf_counter() - t0
                if rep == 0:
                    grads[n] = grad_vector(model)
                else:
                    seconds[n].append(dt)
                log(f"{'warm-up' if rep == 0 else f'repeat {rep}/{repeats}'} {n}: {dt:.2f}s")
            done = rep
    except KeyboardInterrupt:
        if done:
            log(f"interrupted in repeat {done + 1}: keeping the {done} repeat(s) that every lever finished")
            seconds = {n: times[:done] for n, times in seconds.items()}
    return grads, seconds, outs, done


def batch_flops(config: Any, samples: list[Any], kl: bool) -> tuple[float, float]:
    """FLOPs of a packed pass over `samples` (`dashrl.runtime.flops.pass_flops`, plus the reference
    model's forward where `kl`): with every sample's own prompt, and with each group's prompt once.
    NaN for a model whose shape `shape_of` does not know."""
    from dashrl.runtime.flops import pass_flops, shape_of

    shape = shape_of(config)
    if shape is None:
        return float("nan"), float("nan")
    own = [(len(s.prompt_ids), [len(s.completion_ids)]) for s in samples]
    grouped: dict[Any, tuple[int, list[int]]] = {}
    for s in samples:
        grouped.setdefault(s.group, (len(s.prompt_ids), []))[1].append(len(s.completion_ids))

    def count(groups: list[tuple[int, list[int]]]) -> float:
        return float(pass_flops(shape, groups) + (pass_flops(shape, groups, backward=False) if kl else 0))

    return count(own), count(list(grouped.values()))


def lever_figures(
    seconds: float, tokens: int, flops: tuple[float, float], peak: float, grad: Any, base_grad: Any
) -> dict[str, float]:
    """One lever's rate, its MFUs against `peak` GFLOP/s (`flops`: the batch's FLOPs with every sample's
    own prompt, and with each group's prompt once, `batch_flops`) and its gradient's relative distance
    from the base's.

    >>> import torch
    >>> f = lever_figures(2.0, 1000, (6e9, 3.6e9), 6.0, torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]))
    >>> f["tok_per_s"], f["mfu"], f["mfu_needed"], f["grad_rel"]
    (500.0, 0.5, 0.3, 1.0)
    """
    return {
        "seconds": seconds,
        "tok_per_s": tokens / seconds,
        "mfu": flops[0] / seconds / (peak * 1e9),
        "mfu_needed": flops[1] / seconds / (peak * 1e9),
        "grad_rel": float((grad - base_grad).norm() / base_grad.norm().clamp_min(1e-30)),
    }


def backprop_header(cfg: Any, n_samples: int, tokens: int, needed: int, done: int, repeats: int, peak: float) -> str:
    """The workload line above the table."""
    import torch

    header = (
        f"Backprop levers on {cfg.model.name} ({cfg.model.dtype}), task {cfg.task.name}: one batch of {n_samples} "
        f"samples ({tokens} trained tokens counted, {needed} with each group's prompt once), micro-batch "
        f"{cfg.train.micro_batch_size}, upper median of {done} interleaved passes; torch threads "
        f"{torch.get_num_threads()}; matmul peak bf16 {peak:.0f} GFLOP/s; the config's own setting: train.packed "
        f"{cfg.train.packed}, train.head_chunk {cfg.train.head_chunk}."
    )
    if done < repeats:
        header += f" Interrupted (Ctrl-C): {done} of {repeats} repeats measured."
    return header


def write_backprop(out_dir: Path, text: str, payload: dict[str, Any]) -> None:
    """backprop.md and backprop.json in `out_dir`."""
    from dashrl.runtime.io import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "backprop.md", text)
    atomic_write_text(out_dir / "backprop.json", json.dumps(payload, indent=1))
