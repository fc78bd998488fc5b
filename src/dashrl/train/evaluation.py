"""Evaluation inside training: every `eval.every` optimizer steps, on the chosen datasets.

Greedy decoding with the rollout source's evaluation sampler (the trainer's own sampler
in one process, a driver-side copy refreshed with the newest weights on Ray); the
results join that step's metrics row as `eval/<dataset>/accuracy` and
`eval/<dataset>/mean_tokens` (and `eval/<dataset>/tool_calls` in a run with an environment, whose
evaluation runs trajectories as training does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dashrl.data import Example

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.config import EvalConfig


EVAL_SEED = -1  # held-out arithmetic: training streams use seeds >= 0


def load_eval_sets(
    names: list[str], limit: int, difficulty: int = 1, split: str | None = None, **fields: str | None
) -> dict[str, list[Example]]:
    """The evaluation sets `names`, first `limit` problems each (0 = all): `arithmetic` is
    `limit or 100` held-out problems at `difficulty` (a stream no training seed draws from),
    so are the word-problem sets of `dashrl.data.wordproblems.EVAL_SETS`; anything else goes to
    `dashrl.data.datasets.load_dataset` (with `split` and `fields`).
    Both `dashrl eval` and the evaluation inside training use it.

    >>> load_eval_sets(["arithmetic"], 3)["arithmetic"][0].id
    'arith-1--1-0'
    """
    from dashrl.data.arithmetic import arithmetic_example
    from dashrl.data.datasets import DatasetError, check_dataset_name, load_dataset
    from dashrl.data.wordproblems import EVAL_SETS, eval_set

    sets: dict[str, list[Example]] = {}
    for name in names:
        check_dataset_name(name, also=("arithmetic", *EVAL_SETS))
        if (name == "arithmetic" or name in EVAL_SETS) and any(fields.values()):
            raise DatasetError(
                f"{name!r} is a procedural set (it has no records to read fields from); field names apply to files only"
            )
        if name == "arithmetic":
            sets[name] = [arithmetic_example(EVAL_SEED, i, difficulty) for i in range(limit or 100)]
        elif name in EVAL_SETS:  # held-out word problems and their OOD variants, around `difficulty`
            sets[name] = eval_set(name, difficulty, limit or 100)
        else:
            sets[name] = load_dataset(name, split, limit=limit or None, **fields)
    return sets


def eval_env(cfg: Any, task: Any) -> tuple[Any, Any]:
    """The environment and limits a multi-turn run evaluates with: the task's (given in Python) or
    `[env]`'s; `(None, None)` for a single-turn run."""
    if getattr(task, "env", None) is None and not cfg.env.enabled:
        return None, None
    from dashrl.env.rollout import env_limits
    from dashrl.rollout.samples import env_of

    return env_of(cfg, task), env_limits(cfg)


class PeriodicEval:
    """Loads its datasets once; `run(sampler)` evaluates with the weights `sampler` holds."""

    def __init__(self, cfg: "EvalConfig", tokenizer: Any, difficulty: int = 1, env: Any = None, limits: Any = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.env, self.limits = env, limits  # a multi-turn run evaluates with its environment (`eval_env`)
        self.sets: dict[str, list[Example]] = {}
        if cfg.every > 0:
            self.sets = load_eval_sets(cfg.dataset_names, cfg.limit, difficulty)

    def due(self, step: int, last: bool) -> bool:
        return self.cfg.every > 0 and (step % self.cfg.every == 0 or last)

    def run(self, sampler: Any) -> dict[str, float]:
        import time

        from dashrl.eval import evaluate
        from dashrl.rollout import SamplingParams

        params = SamplingParams(max_new_tokens=self.cfg.max_new_tokens, temperature=0.0, batch_size=self.cfg.batch_size)
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        for name, examples in self.sets.items():
            report = evaluate(sampler, self.tokenizer, examples, params=params, n=1, ks=(1,), seed=0, env=self.env,
                              limits=self.limits)  # fmt: skip
            out[f"eval/{name}/accuracy"] = report["accuracy"]
            out[f"eval/{name}/mean_tokens"] = report["mean_length"]
            if "env" in report:
                out[f"eval/{name}/tool_calls"] = report["env"]["env/tool_calls"]
        out["time/eval_s"] = time.perf_counter() - t0
        return out
