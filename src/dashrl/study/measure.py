"""The study's one evaluator, and SFT-M's traces.

`evaluate_model` reads every model of the study (the base model, each arm's final
checkpoint, the PPO arms at DASH's wall-clock) the same way, through `dashrl.eval.evaluate`
(the code behind `dashrl eval`): greedy decoding on each evaluation set (accuracy and
generation length, per problem, for paired comparisons), then `passk_n` samples per
problem on the first `passk_limit` in-distribution problems at `passk_temperature` for
pass@k, k = 1, 2, 4, ..., n (the unbiased estimator), with one sampling seed for all
models. Results are cached as JSON under `DIR/eval/`, named by the model and the
settings, so a rerun reuses them and never overwrites one.

`distill_traces` writes SFT-M's data: the teacher's correct completions to the training
stream's problems (`dashrl.study.distill.distill`: correct only, distinct, at most k each).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from dashrl.study.presets import Preset

EVAL_SEED = 0  # pass@k sampling seed, the same for every model


def eval_settings(preset: Preset, dtype: str, difficulty: int) -> dict[str, Any]:
    return {
        "sets": list(preset.eval_sets), "limit": preset.eval_limit, "max_new_tokens": preset.eval_max_new_tokens,
        "passk_n": preset.passk_n, "passk_limit": preset.passk_limit, "temperature": preset.passk_temperature,
        "top_p": preset.passk_top_p, "dtype": dtype, "difficulty": difficulty, "seed": EVAL_SEED,
    }  # fmt: skip


def cache_path(eval_dir: Path, key: str, model: str, settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps([model, settings], sort_keys=True).encode()).hexdigest()[:10]
    return eval_dir / f"{key}-{digest}.json"


def evaluate_model(
    model_spec: str, preset: Preset, *, dtype: str, difficulty: int, attn: str = "sdpa"
) -> dict[str, Any]:
    """Greedy accuracy and lengths on every set, pass@k on the in-distribution set.

    Returns `{"sets": {name: {"accuracy", "mean_length", "correct": [0/1 per problem],
    "lengths": [tokens per problem]}}, "pass_at_k": {k: mean}, "pass_items": {k: [per problem]}}`.
    """
    from dashrl.eval import evaluate, pass_at_k
    from dashrl.models import load_model
    from dashrl.rollout import SamplingParams, make_sampler
    from dashrl.train.evaluation import load_eval_sets
    from dashrl.train.metrics import silence_transformers_bars

    silence_transformers_bars()
    sets = load_eval_sets(list(preset.eval_sets), preset.eval_limit, difficulty)
    model, tok = load_model(model_spec, attn=attn)
    sampler = make_sampler("hf", model=model, tokenizer=tok, dtype=dtype)
    greedy = SamplingParams(max_new_tokens=preset.eval_max_new_tokens, temperature=0.0, batch_size=64)
    out: dict[str, Any] = {"model": model_spec, "sets": {}}
    for name, examples in sets.items():
        rep = evaluate(sampler, tok, examples, params=greedy, n=1, records=True)
        out["sets"][name] = {
            "accuracy": rep["accuracy"], "mean_length": rep["mean_length"], "truncated": rep["truncated"],
            "correct": [r["correct"] for r in rep["records"]], "lengths": [r["lengths"][0] for r in rep["records"]],
        }  # fmt: skip
    examples = sets[preset.id_set][: preset.passk_limit or None]
    n, ks = preset.passk_n, preset.pass_ks
    sampled = SamplingParams(max_new_tokens=preset.eval_max_new_tokens, temperature=preset.passk_temperature,
                             top_p=preset.passk_top_p, batch_size=64)  # fmt: skip
    rep = evaluate(sampler, tok, examples, params=sampled, n=n, ks=ks, seed=EVAL_SEED, records=True)
    out["pass_at_k"] = rep["pass_at_k"]
    out["pass_items"] = {str(k): [pass_at_k(n, r["correct"], k) for r in rep["records"]] for k in ks}
    out["sampled_mean_length"] = rep["mean_length"]
    return out


def cached_eval(
    eval_dir: Path, key: str, model_spec: str, preset: Preset, *, dtype: str, difficulty: int
) -> dict[str, Any]:
    """`evaluate_model`, read from `DIR/eval/` when this model was evaluated with these settings."""
    from dashrl.train.checkpoint import atomic_write_text

    settings = eval_settings(preset, dtype, difficulty)
    path = cache_path(eval_dir, key, model_spec, settings)
    if path.is_file():
        return json.loads(path.read_text())
    print(f"[dashrl] study: evaluating {key} ({model_spec})", file=sys.stderr, flush=True)
    result = {
        **evaluate_model(model_spec, preset, dtype=dtype, difficulty=difficulty),
        "settings": settings,
        "key": key,
    }
    eval_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result))
    return result


def distill_traces(teacher: str, cfg: Any, preset: Preset, out: Path) -> dict[str, Any]:
    """Write the teacher's correct traces for SFT-M to `out` (once); returns the distill stats.

    An empty result writes no file (SFT-M then cannot run, and the report says why).
    """
    from dashrl.data.tasks import make_task
    from dashrl.study.distill import distill
    from dashrl.models import load_model
    from dashrl.rollout import make_sampler, sampling_params
    from dashrl.train.checkpoint import atomic_write_text

    stats_path = out.with_suffix(".stats.json")
    if stats_path.is_file():
        return json.loads(stats_path.read_text())
    print(f"[dashrl] study: distilling SFT-M traces from {teacher}", file=sys.stderr, flush=True)
    task = make_task(cfg.task, cfg.train.seed)
    model, tok = load_model(teacher, attn=cfg.model.attn)
    sampler = make_sampler("hf", model=model, tokenizer=tok, dtype=cfg.model.dtype)
    params = sampling_params(cfg)
    records, st = distill(sampler, tok, task, problems=preset.distill_problems, n=preset.distill_n, k=preset.distill_k,
                          params=params, seed=cfg.train.seed)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    if records:
        atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in records))
    stats = {"teacher": teacher, "problems": st.problems, "covered": st.covered, "samples": st.samples,
             "correct": st.correct, "kept": st.kept, "file": str(out) if records else None}  # fmt: skip
    atomic_write_text(stats_path, json.dumps(stats))
    return stats
