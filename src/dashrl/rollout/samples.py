"""Scored samples: the one record that local and Ray code both pass around, how a
sampling pass becomes such records (scoring and advantages, in ONE place), the metrics of a
pass, and the two objects that make passes: `SamplerHost` (a sampler on a policy's sampling
weights, the run's `SamplingParams`, the prompt-id cache: what one process and every Ray
sampler actor hold) and `LocalSource`, the `RolloutSource` of one process
(`dashrl.train.schedules`). Torch and the standard library at import.

A `Sample` lives in CPU memory until a micro-batch asks for it. On the Ray path the
driver holds `SampleRef`s instead: the same numbers (reward, advantage, length) and
where the tokens are (a group object in the Ray object store), so the schedules'
filtering and normalisation run on the driver without the tokens ever passing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from dashrl.algo.advantages import advantages_of, as_advantages


def sample_seed(seed: int, step: int, call: int) -> int:
    """Seed of generate call `call` in step `step`: a pure function of (run seed, step, call).

    >>> sample_seed(0, 1, 2)
    1011
    """
    return (seed * 1_000_003 + step) * 1_009 + call


@dataclass
class Sample:
    """One scored completion, kept in CPU memory until a micro-batch asks for it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]  # sampling policy, per completion token
    reward: float
    advantage: float
    group: int  # index of the prompt's group within the step's batch
    finish_reason: str
    version: int = 0  # optimizer steps the sampling policy had taken
    info: dict[str, Any] = field(default_factory=dict)  # text, rewards per function, correct (sample log, metrics)
    mask: list[int] | None = None  # per completion token: 1 trained (the model's), 0 context (an environment's)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)

    @property
    def num_tokens(self) -> int:
        """Completion tokens trained on: the model's own (the loss's token counts and `gen/mean_tokens`)."""
        return len(self.completion_ids) if self.mask is None else sum(self.mask)

    @property
    def env_tokens(self) -> int:
        """Completion tokens an environment wrote (context, never trained on)."""
        return 0 if self.mask is None else len(self.mask) - sum(self.mask)


@dataclass
class SampleRef:
    """A sample whose tokens stay in the Ray object store: `ref` holds its whole group, this is member `index`."""

    group: int
    index: int
    reward: float
    advantage: float
    num_tokens: int
    finish_reason: str
    ref: Any = None
    version: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # as `Sample.info`
    env_tokens: int = 0  # as `Sample.env_tokens`


@dataclass
class Rollouts:
    """One sampling pass: M x G scored samples (group-major) and what it cost."""

    samples: list[Any]  # Sample or SampleRef
    metrics: dict[str, float] = field(default_factory=dict)


def score_groups(
    examples: Sequence[Any],
    prompts: Sequence[list[int]],
    completions: Sequence[Any],
    grade: Callable[[Sequence[Any], Sequence[Any]], Any],
    group_size: int,
    advantages: Any = True,
    first_group: int = 0,
    version: int = 0,
) -> list[Sample]:
    """Score `len(examples) * G` completions (group-major) and give each its group advantage
    (`advantages`: the algorithm's `dashrl.algo.advantages.Advantages`; True / False, the
    former `scale` flag, are GRPO's and Dr.GRPO's).

    `grade(examples, completions)` is `Task.grade`: it returns a `dashrl.rewards.funcs.Scored`
    (the summed rewards, each function's values, the task's own check), kept per sample in `info`.
    """
    G = group_size
    scored = grade([examples[i // G] for i in range(len(completions))], completions)
    scores = scored.rewards
    rewards = torch.tensor(scores, dtype=torch.float32).view(len(examples), G)  # [B, G]
    lengths = torch.tensor([_trained_length(c) for c in completions]).view(len(examples), G)  # [B, G]
    advantages = as_advantages(advantages)(rewards, lengths).view(-1).tolist()  # [B * G]
    infos = [
        {"id": examples[i // G].id, "text": c.text, "prompt_ids": prompts[i],
         "rewards": {k: v[i] for k, v in scored.per_func.items()},
         "correct": scored.correct[i] if scored.correct is not None else None}
        for i, c in enumerate(completions)
    ]  # fmt: skip
    return [
        Sample(
            prompts[i],
            c.token_ids,
            c.logprobs,
            float(scores[i]),
            advantages[i],
            first_group + i // G,
            c.finish_reason,
            version,
            infos[i],
        )
        for i, c in enumerate(completions)
    ]


def _trained_length(c: Any) -> int:
    """Tokens of a completion the model wrote (a multi-turn trajectory's `mask` leaves out the environment's)."""
    mask = getattr(c, "mask", None)
    return len(c.token_ids) if mask is None else sum(mask)


def sample_and_score(
    sampler: Any,
    prompt_ids: Callable[[Any], list[int]],
    grade: Callable[[Sequence[Any], Sequence[Any]], Any],
    examples: Sequence[Any],
    group_size: int,
    params: Any,
    seed: int,
    start: int = 0,
    first_group: int = 0,
    advantages: Any = True,
    version: int = 0,
) -> Rollouts:
    """Sample G completions of each example in ONE `sampler.generate` call, score them and give
    each its group advantage: the one function the local source and the Ray sampler actors run.

    `start` is the index of this call's first sample within the sampling call it is part of
    (its seeds, see `Sampler.generate`); `first_group` is the group id of its first example.
    The metrics hold `time/sampling_s` and `time/scoring_s`.
    """
    G = group_size
    prompts = [prompt_ids(ex) for ex in examples for _ in range(G)]
    t0 = time.perf_counter()
    completions = sampler.generate(prompts, params, seed=seed, start=start)
    t1 = time.perf_counter()
    samples = score_groups(examples, prompts, completions, grade, G, advantages, first_group, version)
    metrics = {**rollout_metrics(samples), "time/sampling_s": t1 - t0, "time/scoring_s": time.perf_counter() - t1}
    return Rollouts(samples, metrics)


def sample_env_and_score(host: Any, grade: Any, examples: Sequence[Any], seed: int, first_group: int = 0,
                         start: int = 0) -> Rollouts:  # fmt: skip
    """G trajectories of each example on `host`'s sampler and environment (`dashrl.env.rollout`), graded as
    single-turn completions are (on the last model turn's text) plus the environment's `get_reward()`
    (`reward/<ClassName>`, weight 1), with group advantages over whole trajectories. Each `Sample` carries
    its trajectory's mask (1 on the model's tokens, 0 on the environment's), turns (`info["turns"]`) and
    counts (`info["env"]`: tool calls, turns, how it ended, the environment's reward; what a Ray sampler
    sends the driver). `start`: the index of the first trajectory in the sampling call (a Ray unit's)."""
    from dataclasses import asdict
    from functools import partial

    from dashrl.env import rollout as er

    G, env = host.cfg.algo.group_size, host.env
    t0 = time.perf_counter()
    trajs = [er.start(env, ex, er.reset_seed(seed, first_group + b), host.tokenizer)
             for b, ex in enumerate(examples) for _ in range(G)]  # fmt: skip
    er.multi_turn(host.sampler, host.params, trajs, seed, er.env_limits(host.cfg), host.tokenizer, start)
    t1 = time.perf_counter()
    graded = partial(er.grade_with_env, grade, env.name)
    samples = score_groups(examples, [t.prompt_ids for t in trajs], trajs, graded, G, host.advantages, first_group,
                           host.version)  # fmt: skip
    for s, t in zip(samples, trajs):
        s.mask = list(t.mask)
        s.info["turns"] = [asdict(turn) for turn in t.turns]
        s.info["env"] = {**er.counts(t), "name": env.name, "reward": s.info["rewards"].get(env.name)}
    metrics = {**rollout_metrics(samples), **er.env_metrics(trajs), "time/sampling_s": t1 - t0,
               "time/scoring_s": time.perf_counter() - t1}  # fmt: skip
    return Rollouts(samples, metrics)


def pack_groups(kept: Sequence[tuple[int, int]], size: int) -> list[list[int]]:
    """Pack `(group, samples)` pairs, in order, into packs of whole groups holding at most
    `size` samples (a larger group goes alone); empty groups are left out. The one packer of
    micro-batches (`dashrl.train.learner`) and of the Ray trainers' deliveries.

    >>> pack_groups([(0, 3), (1, 0), (2, 2), (3, 5), (4, 1)], 4)
    [[0], [2], [3], [4]]
    >>> pack_groups([(0, 1), (1, 2), (2, 1), (3, 4)], 4)
    [[0, 1, 2], [3]]
    """
    out: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for group, n in kept:
        if n == 0:
            continue
        if current and filled + n > size:
            out.append(current)
            current, filled = [], 0
        current.append(group)
        filled += n
    return out + ([current] if current else [])


def accuracy_metrics(samples: Sequence[Any]) -> dict[str, float]:
    """`accuracy` from the task's own check (`info["correct"]`), absent where the task has none;
    and `reward/<name>` for each reward function. Samples without `info` (supervised records)
    count `reward >= 1` as correct.

    >>> s = [SampleRef(0, i, 1.0, 0.0, 1, "stop", info={"correct": c, "rewards": {"fmt": f}})
    ...      for i, (c, f) in enumerate([(1.0, 0.5), (0.0, None)])]
    >>> accuracy_metrics(s)
    {'accuracy': 0.5, 'reward/fmt': 0.5}
    >>> accuracy_metrics([SampleRef(0, 0, 2.0, 0.0, 1, "stop", info={"correct": None, "rewards": {}})])
    {}
    """
    if not any(s.info for s in samples):
        return {"accuracy": sum(s.reward >= 1.0 for s in samples) / len(samples)}
    out: dict[str, float] = {}
    checked = [s.info["correct"] for s in samples if s.info.get("correct") is not None]
    if checked:
        out["accuracy"] = sum(checked) / len(checked)
    names = list(dict.fromkeys(k for s in samples for k in s.info.get("rewards", {})))
    if names:  # the task's own check alone has no per-function rewards
        from dashrl.rewards.funcs import func_means

        out.update(func_means({k: [s.info.get("rewards", {}).get(k) for s in samples] for k in names}))
    return out


def rollout_metrics(samples: Sequence[Any]) -> dict[str, float]:
    """Reward, accuracy, advantage and length statistics of one pass (Sample or SampleRef).

    >>> rs = [SampleRef(0, i, r, 0.5 - r, 4, "stop") for i, r in enumerate([1.0, 0.0])]
    >>> rollout_metrics(rs)["accuracy"], rollout_metrics(rs)["gen/sampled_tokens"]
    (0.5, 8)
    """
    n = len(samples)
    if n == 0:
        return {}
    rewards = torch.tensor([s.reward for s in samples])  # [M * G]
    adv = torch.tensor([s.advantage for s in samples])  # [M * G]
    n_tok = sum(s.num_tokens for s in samples)
    return {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if n > 1 else 0.0,
        **accuracy_metrics(samples),
        "adv/abs_mean": float(adv.abs().mean()),
        "gen/mean_tokens": n_tok / n,
        "gen/truncated_frac": sum(s.finish_reason == "length" for s in samples) / n,
        "gen/empty_frac": sum(s.num_tokens == 0 for s in samples) / n,
        "gen/sampled_tokens": n_tok,
        **env_token_metrics(samples),
    }


def env_token_metrics(samples: Sequence[Any]) -> dict[str, float]:
    """`gen/env_tokens`, an environment's tokens per sample, where any sample has some
    (single-turn runs log what they did before).

    >>> env_token_metrics([SampleRef(0, 0, 1.0, 0.0, 4, "stop", env_tokens=6), SampleRef(0, 1, 1.0, 0.0, 4, "stop")])
    {'gen/env_tokens': 3.0}
    """
    env = [getattr(s, "env_tokens", 0) for s in samples]
    return {"gen/env_tokens": sum(env) / len(samples)} if any(env) else {}


class SamplerHost:
    """A sampler on `policy`'s sampling weights, with the run's sampling settings and a cache of
    prompt ids: what the one-process source and each Ray sampler actor hold
    (`dashrl.distributed.actors.SamplerWorker`). `version` is the optimizer steps of the weights
    it holds, which every sample records; `generate_calls` counts sampling passes."""

    def __init__(self, cfg: Any, policy: Any, tokenizer: Any, env: Any = None):
        from dashrl.rollout import make_sampler, sampling_params

        self.cfg, self.policy, self.tokenizer = cfg, policy, tokenizer
        self.sampler = make_sampler(
            cfg.sampler.backend, model=policy.sampler_model(), tokenizer=tokenizer, dtype=cfg.model.dtype
        )
        self.params = sampling_params(cfg)
        self.advantages = advantages_of(cfg)  # the algorithm's estimator, looked up once
        self.version = 0
        self.generate_calls = 0
        self._prompts: dict[str, list[int]] = {}
        self.env = env  # a `dashrl.env.loading.EnvSpec`: multi-turn rollouts (`sample_env_and_score`)

    def prompt_ids(self, ex: Any) -> list[int]:
        """`ex`'s prompt as token ids (chat template and answer instruction), built once per example."""
        if ex.id not in self._prompts:
            from dashrl.data.prompts import build_prompt

            self._prompts[ex.id] = build_prompt(self.tokenizer, ex)
        return self._prompts[ex.id]

    def sample(self, examples: Sequence[Any], seed: int, grade: Any, start: int = 0, first_group: int = 0) -> Rollouts:
        """G completions of each example in ONE generate call, scored by `grade` (`sample_and_score`);
        with an environment, G trajectories, one generate call per turn (`sample_env_and_score`)."""
        if self.env is not None:
            ro = sample_env_and_score(self, grade, examples, seed, first_group)
            self.generate_calls += 1
            return ro
        ro = sample_and_score(self.sampler, self.prompt_ids, grade, examples, self.cfg.algo.group_size, self.params,
                              seed, start, first_group, self.advantages, self.version)  # fmt: skip
        self.generate_calls += 1
        return ro

    def load_weights(self, state: Any, version: int) -> float:
        """Give the sampler `state` (the policy's sampler weights) in one transfer; returns seconds."""
        t0 = time.perf_counter()
        self.sampler.load_weights(state)
        self.version = version
        return time.perf_counter() - t0


class LocalSource:
    """The `RolloutSource` of one process: a `SamplerHost` on the learner's policy, and the task.
    The learner's `sync` loads the host (`dashrl.train.loop.local_backend` wires them)."""

    def __init__(self, cfg: Any, policy: Any, tokenizer: Any, task: Any):
        self.cfg, self.task = cfg, task
        self.host = SamplerHost(cfg, policy, tokenizer, env_of(cfg, task))

    def rollout(self, examples: Sequence[Any], seed: int, first_group: int = 0) -> Rollouts:
        """Sample G completions for each example in ONE generate call, score, compute advantages."""
        return self.host.sample(examples, seed, self.task.grade, first_group=first_group)

    def ahead(self, step: int) -> None:
        """One process samples each step when it comes (no overlap)."""

    def hold(self, samples: Sequence[Any]) -> list[Any]:
        """Samples made here (the sft schedule's records), as the learner takes them: as they are."""
        return list(samples)

    def eval_sampler(self) -> Any:
        """The sampler, which holds the current weights, for in-training evaluation."""
        return self.host.sampler

    def warm_up(self) -> float:
        """First calls of the grader and the sampler, at step 1's shapes (`dashrl.rollout.warmup`); seconds."""
        from dashrl.rollout.warmup import warm_up

        return warm_up(self.host, self.task)

    def state_dict(self) -> dict[str, Any]:
        return {"generate_calls": self.host.generate_calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` (also from a checkpoint's learner state, where older runs kept it)."""
        self.host.generate_calls = int(state.get("generate_calls", 0))


def env_of(cfg: Any, task: Any) -> Any:
    """The run's environment: the task's (objects given to `dashrl.train`), else `[env]`'s (None: single-turn)."""
    if getattr(task, "env", None) is not None:
        return task.env
    if not cfg.env.enabled:
        return None
    from dashrl.env.loading import env_spec

    return env_spec(cfg.env)
