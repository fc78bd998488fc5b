"""Evaluation: sample completions for a set of examples, grade them, summarise.

`evaluate` is what both `dashrl eval` and the trainer's periodic evaluation call. Grading uses the
same reward functions as training: `math_reward` for math, the parallel sandbox for code. A sample
is correct when its reward is 1.0.

Metrics: `accuracy` is the mean correctness over all n samples of all examples (with n = 1 and
temperature 0 this is greedy accuracy); `pass@k` is the unbiased estimator of Chen et al. (2021),
averaged over examples, for every k <= n; `mean_length` is in completion tokens; `truncated` is
the fraction of samples that hit max_new_tokens; `by_subject` / `by_level` break accuracy down by
`meta["subject"]` / `meta["level"]` when examples carry them (MATH-500).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

from dashrl.data import Example
from dashrl.rollout import SamplingParams


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k), computed stably.

    >>> pass_at_k(n=4, c=1, k=2)
    0.5
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        fail *= 1.0 - k / i
    return 1.0 - fail


def _score(examples: Sequence[Example], texts: Sequence[str], n: int, timeout: float) -> list[float]:
    from dashrl.rewards import rewards

    repeated = [ex for ex in examples for _ in range(n)]
    return rewards(repeated, texts, timeout=timeout)


def _breakdown(examples: Sequence[Example], correct: Sequence[int], n: int, key: str) -> dict:
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for example, c in zip(examples, correct):
        value = example.meta.get(key)
        if value is not None:
            groups[str(value)][0] += c
            groups[str(value)][1] += n
    return {name: {"accuracy": hit / total, "samples": total} for name, (hit, total) in sorted(groups.items())}


def evaluate(
    sampler: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    params: SamplingParams,
    n: int = 1,
    ks: Sequence[int] = (1,),
    seed: int = 0,
    build_prompt: Callable[[Any, Example], list[int]] | None = None,
    records: bool = False,
    timeout: float = 10.0,
    env: Any = None,
    limits: Any = None,
) -> dict[str, Any]:
    """Sample `n` completions per example, grade them and return the metrics dict. With `env` (a
    `dashrl.env.loading.EnvSpec`) each sample is a multi-turn trajectory within `limits`
    (`dashrl.env.rollout.Limits`), graded on its last model turn plus the environment's `get_reward()`;
    its length counts the model's tokens, and `env/...` holds the tool and turn counts.

    >>> evaluate(sampler, tok, load_dataset("math500", limit=8),
    ...          params=SamplingParams(temperature=0))["accuracy"]  # doctest: +SKIP
    0.25
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not examples:
        raise ValueError("no examples to evaluate")
    if build_prompt is None:
        from dashrl.data.prompts import build_prompt
    if env is not None:
        completions, extra = _env_rollouts(sampler, tokenizer, examples, params, n, seed, env, limits)
    else:
        prompts = [build_prompt(tokenizer, example) for example in examples for _ in range(n)]
        completions, extra = sampler.generate(prompts, params, seed), None
        if len(completions) != len(prompts):
            raise RuntimeError(f"sampler returned {len(completions)} completions for {len(prompts)} prompts")
    scores = _score(examples, [c.text for c in completions], n, timeout)
    if extra is not None and extra[0] is not None:  # the environment's own reward, weight 1
        scores = [s + r for s, r in zip(scores, extra[0])]
    correct = [sum(s >= 1.0 for s in scores[i * n : (i + 1) * n]) for i in range(len(examples))]
    report: dict[str, Any] = {
        "examples": len(examples),
        "samples": len(completions),
        "accuracy": sum(correct) / len(completions),
        "pass_at_k": {str(k): sum(pass_at_k(n, c, k) for c in correct) / len(examples) for k in ks if k <= n},
        "mean_length": sum(_length(c) for c in completions) / len(completions),
        "truncated": sum(c.finish_reason == "length" for c in completions) / len(completions),
    }
    if extra is not None:
        report["env"] = extra[1]
    for key in ("subject", "level"):
        groups = _breakdown(examples, correct, n, key)
        if groups:
            report[f"by_{key}"] = groups
    if records:
        report["records"] = _records(examples, completions, scores, correct, n, env is not None)
    return report


def _records(examples: Sequence[Example], completions: Sequence[Any], scores: Sequence[float],
             correct: Sequence[int], n: int, turns: bool) -> list[dict[str, Any]]:  # fmt: skip
    """Per example: its completions, scores, finish reasons, lengths (and a trajectory's turns)."""
    out = []
    for i, example in enumerate(examples):
        mine = completions[i * n : (i + 1) * n]
        rec = {"id": example.id, "correct": correct[i], "scores": scores[i * n : (i + 1) * n],
               "completions": [c.text for c in mine], "finish_reasons": [c.finish_reason for c in mine],
               "lengths": [_length(c) for c in mine]}  # fmt: skip
        if turns:
            rec["turns"] = [[vars(t) for t in c.turns] for c in mine]
        out.append(rec)
    return out


def _length(c: Any) -> int:
    """Completion tokens the model wrote (a trajectory's environment tokens left out)."""
    mask = getattr(c, "mask", None)
    return len(c.token_ids) if mask is None else sum(mask)


def _env_rollouts(sampler: Any, tokenizer: Any, examples: Sequence[Example], params: SamplingParams, n: int,
                  seed: int, env: Any, limits: Any) -> tuple[list[Any], tuple[list[float] | None, dict]]:  # fmt: skip
    """`n` trajectories per example (`dashrl.env.rollout`), their `get_reward()`s and tool/turn counts."""
    from dashrl.env.rollout import Limits, env_metrics, env_rewards, multi_turn, reset_seed, start

    trajs = [start(env, ex, reset_seed(seed, i), tokenizer) for i, ex in enumerate(examples) for _ in range(n)]
    multi_turn(sampler, params, trajs, seed, limits or Limits(), tokenizer)
    return trajs, (env_rewards(trajs, env.name), env_metrics(trajs))


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of `{dataset: evaluate(...)}` results.

    >>> print(format_table({"gsm8k": {"examples": 2, "accuracy": 0.5, "pass_at_k": {"1": 0.5},
    ...                               "mean_length": 10.0, "truncated": 0.0}}))
    dataset  examples  accuracy  pass@1  mean_len  truncated
    gsm8k           2    0.5000  0.5000      10.0     0.0000
    """
    ks = sorted({k for r in results.values() for k in r.get("pass_at_k", {})}, key=int)
    header = ["dataset", "examples", "accuracy", *[f"pass@{k}" for k in ks], "mean_len", "truncated"]
    rows = [
        [name, str(r["examples"]), f"{r['accuracy']:.4f}",
         *[f"{r['pass_at_k'][k]:.4f}" if k in r.get("pass_at_k", {}) else "-" for k in ks],
         f"{r['mean_length']:.1f}", f"{r['truncated']:.4f}"]
        for name, r in results.items()
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["evaluate", "format_table", "pass_at_k"]
