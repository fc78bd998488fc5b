"""`dashrl bench --multiturn`: sampled tokens/s of a multi-turn step against a single-turn step of the
same token count, on one sampler and the same prompts.

The multi-turn arm runs the run's environment (`--env.*`; default the calculator on its arithmetic
task) as training does (`dashrl.env.rollout.multi_turn`: one generate call per turn over the live
trajectories, the tool calls of a turn at once). The single-turn arm decodes the same prompts in one
generate call with stop tokens off and `max_new_tokens` = the multi-turn arm's model tokens per
trajectory (rounded up), so both sample (nearly) the same number of tokens. Reported per arm: model
tokens, environment tokens, generate calls, seconds (best of `--repeats`, the arms alternating) and
model tokens/s; the last column is the multi-turn arm's tokens/s over the single-turn arm's. What
the multi-turn step pays for: a prefill of each turn's whole history, smaller decode batches as
trajectories finish, and its tools.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence


@dataclass
class Arm:
    """One timed sampling pass."""

    name: str
    trajectories: int
    model_tokens: int
    env_tokens: int
    generate_calls: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.model_tokens / self.seconds if self.seconds > 0 else 0.0


class Counting:
    """A sampler that counts its generate calls."""

    def __init__(self, sampler: Any):
        self.sampler, self.calls = sampler, 0

    def generate(self, prompts: Sequence[Sequence[int]], params: Any, seed: int, start: int = 0) -> list[Any]:
        self.calls += 1
        return self.sampler.generate(prompts, params, seed, start)


def time_arms(model: Any, tokenizer: Any, examples: Sequence[Any], G: int, params: Any, env: Any, limits: Any,
              seed: int = 0, dtype: str = "fp32") -> list[Arm]:  # fmt: skip
    """One multi-turn pass over `examples` x G and one single-turn pass of the same token count."""
    from dashrl.env.rollout import multi_turn, reset_seed, start
    from dashrl.rollout.hf import HFSampler

    multi = Counting(HFSampler(model, tokenizer, dtype=dtype))
    trajs = [start(env, ex, reset_seed(seed, b), tokenizer) for b, ex in enumerate(examples) for _ in range(G)]
    t0 = time.perf_counter()
    multi_turn(multi, params, trajs, seed, limits, tokenizer)
    seconds = time.perf_counter() - t0
    n_model = sum(sum(t.mask) for t in trajs)
    arm = Arm("multi-turn", len(trajs), n_model, sum(t.env_tokens for t in trajs), multi.calls, seconds)
    length = max(1, math.ceil(n_model / len(trajs)))
    single = Counting(HFSampler(model, tokenizer, dtype=dtype, stop_ids=[-1]))  # no stop token: every row `length`
    t0 = time.perf_counter()
    outs = single.generate([t.prompt_ids for t in trajs], replace(params, max_new_tokens=length), seed)
    seconds = time.perf_counter() - t0
    return [arm, Arm("single-turn", len(trajs), sum(len(c.token_ids) for c in outs), 0, single.calls, seconds)]


def best(runs: Sequence[Sequence[Arm]]) -> list[Arm]:
    """Each arm's fastest repeat (the counts of its first)."""
    return [replace(rs[0], seconds=min(a.seconds for a in rs)) for rs in zip(*runs)]


def table(arms: Sequence[Arm]) -> str:
    """The arms as a markdown table, the last column each arm's tokens/s over the single-turn arm's.

    >>> print(table([Arm("multi-turn", 4, 100, 40, 3, 2.0), Arm("single-turn", 4, 100, 0, 1, 1.0)]))
    | arm | trajectories | model tokens | env tokens | generate calls | seconds | model tokens/s | vs single-turn |
    |---|---|---|---|---|---|---|---|
    | multi-turn | 4 | 100 | 40 | 3 | 2.00 | 50.0 | 0.50x |
    | single-turn | 4 | 100 | 0 | 1 | 1.00 | 100.0 | 1.00x |
    """
    base = next(a for a in arms if a.name == "single-turn").tokens_per_s
    lines = ["| arm | trajectories | model tokens | env tokens | generate calls | seconds | model tokens/s | "
             "vs single-turn |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for a in arms:
        ratio = a.tokens_per_s / base if base else 0.0
        lines.append(f"| {a.name} | {a.trajectories} | {a.model_tokens} | {a.env_tokens} | {a.generate_calls} | "
                     f"{a.seconds:.2f} | {a.tokens_per_s:.1f} | {ratio:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def multiturn_run(args: Any) -> int:
    """`dashrl bench --multiturn [--config FILE_OR_NAME] [--repeats N] [--out DIR]`: print the table
    and write it to `OUT/multiturn.md`, every repeat's arms to `OUT/multiturn.json` (default config:
    `calculator`)."""
    from pathlib import Path

    import torch

    from dashrl.config import load_config
    from dashrl.data.tasks import make_task
    from dashrl.env.loading import env_spec
    from dashrl.env.rollout import env_limits
    from dashrl.models import load_model
    from dashrl.rollout import sampling_params

    config, overrides = args.config or "calculator", list(getattr(args, "overrides", None) or [])
    cfg = load_config(config, overrides)
    env = env_spec(cfg.env)
    if env is None:
        raise SystemExit("dashrl bench --multiturn: the config has no [env] (try --config calculator)")
    model, tok = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    examples = make_task(cfg.task, cfg.train.seed).batch(0, cfg.algo.prompts_per_step)
    params = sampling_params(cfg)
    runs = [time_arms(model, tok, examples, cfg.algo.group_size, params, env, env_limits(cfg), seed=0,
                      dtype=cfg.model.dtype) for _ in range(max(1, args.repeats))]  # fmt: skip
    text = table(best(runs))
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "multiturn.md").write_text(f"# Multi-turn against single-turn sampling ({cfg.model.name})\n\n{text}\n")
    raw = {"config": config, "overrides": overrides,
           "threads": torch.get_num_threads(), "repeats": [[asdict(a) for a in arms] for arms in runs]}  # fmt: skip
    (out / "multiturn.json").write_text(json.dumps(raw, indent=1) + "\n")
    return 0
