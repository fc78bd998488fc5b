"""Work units of the distributed sampler and the bookkeeping around them; no Ray here.

A step's batch is M prompts x G samples, group-major: sample `i` belongs to group
`i // G`. The single-process `hf` sampler decodes it in chunks of `sampler.batch_size`
samples, chunk `c` seeded by `(seed, c * batch_size)`. A *unit* is the smallest run of
whole chunks that is also a run of whole groups, `lcm(batch_size, G)` samples: a
sampler actor decodes a unit chunk by chunk with exactly the seeds the single process
would use; the driver scores it (`score_report`: the reward functions run in the driver
process on every path) and computes its groups' advantages. So what is sampled depends
on (seed, step, weights) only, never on how many samplers there are, which sampler ran
a unit, or whether a unit was sampled again after its first sampler died.
"""

from __future__ import annotations

import dataclasses
import time
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dashrl.data import Example
from dashrl.distributed.store import Delivery
from dashrl.rollout import Completion, Sampler, SamplingParams
from dashrl.rollout.samples import Sample, SampleRef, pack_groups, sample_and_score, score_groups

__all__ = [
    "Unit",
    "UnitResult",
    "TrainReport",
    "plan_units",
    "generate_at",
    "sample_unit",
    "pack_groups",
    "check_deliveries",
]


@dataclass(frozen=True)
class Unit:
    """Groups `first_group .. first_group + num_groups - 1` of one step."""

    index: int
    first_group: int
    num_groups: int


def plan_units(num_prompts: int, group_size: int, batch_size: int) -> list[Unit]:
    """Cut M prompts into units of whole groups that are also whole sampler chunks.

    >>> [(u.first_group, u.num_groups) for u in plan_units(5, 4, 8)]
    [(0, 2), (2, 2), (4, 1)]
    """
    per = math.lcm(batch_size, group_size) // group_size  # groups per unit
    return [Unit(i, g, min(per, num_prompts - g)) for i, g in enumerate(range(0, num_prompts, per))]


def generate_at(
    sampler: Sampler, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int, start: int
) -> list[Completion]:
    """Sample `prompts`, which sit at index `start` of a step's full prompt list, exactly as
    one `sampler.generate(full_list, params, seed)` call would sample them.

    `start` must be a multiple of `params.batch_size` (see `Sampler.generate`).
    """
    return sampler.generate(prompts, params, seed=seed, start=start)


@dataclass
class UnitResult:
    """What a sampler reports to the driver about one unit (the samples travel separately)."""

    unit: int
    first_group: int  # group id (within the step) of the unit's first group
    rewards: list[float]  # [B * G]
    advantages: list[float]  # [B * G]
    lengths: list[int]  # completion tokens per sample
    finish_reasons: list[str]
    sampling_s: float
    scoring_s: float
    version: int = 0  # optimizer steps of the weights that sampled it
    worker: int = -1
    infos: list[dict] = field(default_factory=list)  # per sample: text, rewards per function, correct

    def refs(self, group_refs: Sequence[Any], group_size: int) -> list[SampleRef]:
        """The unit's samples as driver-side records, `group_refs[b]` holding group b's samples."""
        G = group_size
        infos = self.infos or [{}] * len(self.rewards)
        return [
            SampleRef(
                self.first_group + i // G,
                i % G,
                r,
                a,
                n,
                f,
                group_refs[i // G],
                self.version,
                info,
                len(info.get("mask", ())) - sum(info.get("mask", ())),
            )
            for i, (r, a, n, f, info) in enumerate(
                zip(self.rewards, self.advantages, self.lengths, self.finish_reasons, infos)
            )
        ]


def sample_unit(
    sampler: Sampler,
    prompt_ids: Callable[[Example], list[int]],
    grade: Callable[[Sequence[Example], Sequence[Any]], Any] | None,
    examples: Sequence[Example],
    unit: Unit,
    group_size: int,
    params: SamplingParams,
    seed: int,
    advantages: Any = True,
    group_offset: int = 0,
    version: int = 0,
) -> tuple[UnitResult, list[list[Sample]]]:
    """Sample and score one unit (`dashrl.rollout.samples.sample_and_score`, as one process
    does); its report and its samples, one list per group. With `grade` None the unit is left
    unscored (rewards and advantages 0; the report carries texts and token ids) for the driver
    to score with `score_report`: the sampler actors run no reward function.

    `examples` are the unit's own B prompts; `unit` indexes them within ONE sampling call
    (its seeds), `group_offset` is that call's first group within the step. Gradient
    filtering is the schedule's, on the driver, before any forward pass.
    """
    G = group_size
    ro = sample_and_score(
        sampler, prompt_ids, grade or _unscored, examples, G, params, seed, unit.first_group * G,
        group_offset + unit.first_group,
        advantages, version,
    )  # fmt: skip
    return unit_report(ro, examples, unit, G, group_offset, version, scored=grade is not None)


def sample_env_unit(host: Any, examples: Sequence[Example], unit: Unit, seed: int, group_offset: int = 0
                    ) -> tuple[UnitResult, list[list[Sample]]]:  # fmt: skip
    """`sample_unit` with the host's environment: the unit's trajectories, one generate call per turn
    (`dashrl.rollout.samples.sample_env_and_score`), the environment's rewards in the report (`info["env"]`)
    for the driver's `score_report` to add to the task's."""
    from dashrl.rollout.samples import sample_env_and_score

    G = host.cfg.algo.group_size
    ro = sample_env_and_score(host, _unscored, examples, seed, group_offset + unit.first_group, unit.first_group * G)
    return unit_report(ro, examples, unit, G, group_offset, host.version, scored=False)


def unit_report(ro: Any, examples: Sequence[Example], unit: Unit, G: int, group_offset: int, version: int,
                scored: bool) -> tuple[UnitResult, list[list[Sample]]]:  # fmt: skip
    """A sampled unit's report (texts and, unscored, token ids in `infos`) and its samples per group."""
    samples = ro.samples
    infos = [s.info for s in samples]  # travel in the report, to the driver
    if not scored:
        for info, s in zip(infos, samples):
            info["token_ids"] = s.completion_ids
            if s.mask is not None:
                info["mask"] = s.mask
    stored = [dataclasses.replace(s, info={}) for s in samples]  # what trainers fetch: no texts
    groups = [stored[b * G : (b + 1) * G] for b in range(len(examples))]
    report = UnitResult(
        unit=unit.index,
        first_group=group_offset + unit.first_group,
        rewards=[s.reward for s in samples],
        advantages=[s.advantage for s in samples],
        lengths=[s.num_tokens for s in samples],
        finish_reasons=[s.finish_reason for s in samples],
        sampling_s=ro.metrics["time/sampling_s"],
        scoring_s=ro.metrics["time/scoring_s"],
        version=version,
        infos=infos,
    )
    return report, groups


def _unscored(examples: Sequence[Example], completions: Sequence[Any]) -> Any:
    from dashrl.rewards.funcs import Scored

    return Scored([0.0] * len(completions), {})


@dataclass
class Scoring:
    """A sampled completion as the driver grades it: from a report's `infos`, without logprobs."""

    token_ids: list[int]
    text: str
    finish_reason: str
    mask: list[int] | None = None  # a multi-turn trajectory's (its length counts the model's tokens)
    logprobs: list[float] = field(default_factory=list)  # not sent: the trainers fetch the samples themselves


def score_report(
    report: UnitResult,
    examples: Sequence[Example],
    grade: Callable[[Sequence[Example], Sequence[Any]], Any],
    group_size: int,
    advantages: Any,
) -> UnitResult:
    """Score, on the driver, a unit its sampler left unscored: the rewards, advantages and per-sample
    `info` that `score_groups` gives in one process, from the report's texts and token ids.

    >>> from dashrl.rewards.funcs import Scored
    >>> rep = UnitResult(0, 0, [0.0] * 2, [0.0] * 2, [1, 1], ["stop"] * 2, 0.0, 0.0,
    ...                  infos=[{"text": t, "prompt_ids": [1], "token_ids": [2]} for t in ("a", "b")])
    >>> grade = lambda e, c: Scored([float(x.text == "a") for x in c], {})
    >>> score_report(rep, [Example(id="1", problem="p")], grade, 2, True).advantages
    [0.7070068120956421, -0.7070068120956421]
    """
    t0 = time.perf_counter()
    completions = [
        Scoring(info["token_ids"], info["text"], f, info.get("mask"))
        for info, f in zip(report.infos, report.finish_reasons)
    ]
    prompts = [info["prompt_ids"] for info in report.infos]
    env = [info.get("env") for info in report.infos]
    if env and env[0] is not None and env[0]["reward"] is not None:  # the sampler's environment rewarded: add it
        from dashrl.env.rollout import with_env_rewards

        own, name, task_grade = [e["reward"] for e in env], env[0]["name"], grade
        grade = lambda exs, comps: with_env_rewards(task_grade(exs, comps), own, name)  # noqa: E731
    samples = score_groups(
        examples, prompts, completions, grade, group_size, advantages, report.first_group, report.version
    )
    for s, sent in zip(samples, report.infos):  # a trajectory's mask, turns and counts stay with it
        s.info.update({k: sent[k] for k in ("mask", "turns", "env") if k in sent})
    report.rewards = [s.reward for s in samples]
    report.advantages = [s.advantage for s in samples]
    report.infos = [s.info for s in samples]
    report.scoring_s = time.perf_counter() - t0
    return report


def check_deliveries(step: int, deliveries: Sequence[Delivery], expected: dict[int, int]) -> None:
    """Every group with kept samples delivered exactly once and whole, nothing else."""
    seen: dict[int, int] = {}
    for d in deliveries:
        for g in d.groups:
            if g in seen:
                raise RuntimeError(f"step {step}: group {g} was delivered twice")
            seen[g] = 1
    want = {g for g, n in expected.items() if n}
    if set(seen) != want:
        raise RuntimeError(
            f"step {step}: groups lost {sorted(want - set(seen))}, unexpected {sorted(set(seen) - want)}"
        )
    if sum(d.samples for d in deliveries) != sum(expected.values()):
        raise RuntimeError(
            f"step {step}: {sum(d.samples for d in deliveries)} samples delivered, {sum(expected.values())} kept"
        )


@dataclass
class TrainReport:
    """What one trainer reports after its share of a backprop call."""

    rank: int
    totals: dict[str, float] = field(default_factory=dict)  # Learner.backprop metrics over its deliveries
    deliveries: list[Delivery] = field(default_factory=list)
    queue_wait_s: float = 0.0
    backprop_s: float = 0.0
