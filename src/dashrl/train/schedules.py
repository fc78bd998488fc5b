"""Update schedules: the order in which sampling, backprop and optimizer steps happen.

Each schedule runs one step (dash, grpo) or one sampling cycle (ppo_multi, ppo_mini)
and returns one metrics row per optimizer step it made. A schedule talks only to a
`RolloutSource` and a `Learner` (the protocols below): in one process a
`dashrl.rollout.samples.LocalSource` and a `dashrl.train.learner.Learner`, on Ray the sampler
actors and the trainer actors (`dashrl.distributed`), so every schedule runs unchanged at
every scale.

- `dash` (the paper's method): sample M x G in one go (the sampler chunks it by its own
  inference batch size), drop samples with |A| <= threshold before any forward pass,
  backprop the rest in micro-batches, ONE optimizer step. Plain policy gradient.
- `grpo` (the baseline the paper compares against, as TRL 0.16 ran it): generation per
  training micro-batch (micro_batch_size / G prompts at a time), PPO ratio and KL to a
  reference model (beta 0.04), no filtering, one step per M x G samples.
- `ppo_multi`: sample M x G once, K optimizer steps each over all of them (PPO ratio
  against the sampling policy's logprobs; no copy of the old model is kept).
- `ppo_mini`: sample M x G once, K mini-batches of M/K prompts, one step each.
- `sft` (the paper's SFT-H / SFT-M baselines): the next M supervised records from the
  source (`dashrl.train.sft.SFTSource`; nothing is sampled), cross-entropy on their
  completion tokens in micro-batches normalised over the whole step's tokens, ONE step.
- `dynamic` (DAPO's dynamic sampling, on any algorithm with the `dash` schedule): sample in
  rounds until M groups with unequal rewards are found (or the round cap), train on those M
  as `dash` does, ONE step.

Which schedule an algorithm runs is its registry entry's (`dashrl.algo.registry`);
`schedule_fn` picks it.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol, Sequence

from dashrl.algo import Norm
from dashrl.algo.advantages import full_norm, keep
from dashrl.algo.registry import get as get_algorithm
from dashrl.config import Config
from dashrl.rollout.samples import Rollouts, rollout_metrics, sample_seed
from dashrl.totals import SUMMED_KEY, Totals

Row = dict[str, Any]


class RolloutSource(Protocol):
    """Where a step's samples come from."""

    cfg: Config
    task: Any

    def rollout(self, examples: Sequence[Any], seed: int, first_group: int = 0) -> Rollouts:
        """Sample G completions per example (seeded as one generate call), score them."""

    def eval_sampler(self) -> Any:
        """A sampler with the current weights, for in-training evaluation."""

    def ahead(self, step: int) -> None:
        """May start sampling step `step`'s batch now, before the current step's update
        (the Ray source with `dist.overlap` > 0); one process does nothing."""

    def hold(self, samples: Sequence[Any]) -> list[Any]:
        """Samples made on the driver (the sft schedule's records), as the learner takes them."""

    def warm_up(self) -> float:
        """Start-up's first calls of the grader and sampler, so that step 1 does not pay them; seconds."""

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs of the source besides the weights (counters)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Learner(Protocol):
    """What turns samples into an optimizer step."""

    cfg: Config
    policy: Any  # dashrl.policy.Policy: what checkpoints save and load
    tokenizer: Any

    def backprop(self, samples: Sequence[Any], norm: Norm) -> dict[str, float]:
        """Accumulate the gradient of `samples` under the batch's `norm`; returns metrics."""

    def optimizer_step(self, nonfinite: bool) -> dict[str, Any]:
        """Clip, step, schedule (skipped when `nonfinite`); returns grad_norm, lr, ..."""

    def sync(self) -> float:
        """Send the new weights to the rollout source's samplers; returns seconds."""

    def lr(self) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def merge_rollouts(parts: list[Rollouts]) -> Rollouts:
    """Concatenate rollouts: statistics over all samples, times added up."""
    samples = [s for p in parts for s in p.samples]
    times = Totals()
    for p in parts:
        costs = {k: v for k, v in p.metrics.items() if k.startswith(("time/", "dist/"))}
        times.add(costs, len(p.samples), summed=costs)
    costs = times.result()
    costs.pop(SUMMED_KEY, None)
    return Rollouts(samples, {**rollout_metrics(samples), **costs})


def make_row(
    lrn: Learner,
    ro: Rollouts | None,
    bp: dict[str, float],
    opt: dict[str, Any],
    kept: int,
    total: int,
    t0: float,
    sync_s: float,
) -> Row:
    """The one metrics row of an optimizer step, at every scale (`dist/*` keys pass through)."""
    sampling = (
        ro.metrics if ro is not None else {"time/sampling_s": 0.0, "time/scoring_s": 0.0, "gen/sampled_tokens": 0}
    )
    row: Row = dict(sampling)
    row.update(
        {
            "filter/kept_frac": kept / total if total else 0.0,
            "loss": bp.get("loss", 0.0),
            "grad_norm": opt.get("grad_norm", 0.0),
            "lr": opt.get("lr", lrn.lr()),
            "time/backprop_s": bp.get("time/backprop_s", 0.0),
            "time/optimizer_s": opt.get("time/optimizer_s", 0.0),
            "time/sync_s": sync_s,
            "time/step_s": time.perf_counter() - t0,
            "train/samples": int(bp.get("train/samples", 0)),
            "train/tokens": int(bp.get("train/tokens", 0)),
        }
    )
    for key, v in bp.items():  # the loss's own metrics, whatever they are
        if key not in row and key not in (SUMMED_KEY, "nonfinite"):
            row[key] = v
    for key, v in opt.items():
        if key.startswith("dist/"):
            row[key] = v
    if lrn.cfg.algo.beta > 0:
        row.setdefault("kl", 0.0)
    row["tokens/sampled_per_s"] = row["gen/sampled_tokens"] / row["time/sampling_s"] if row["time/sampling_s"] else 0.0
    row["tokens/trained_per_s"] = row["train/tokens"] / row["time/backprop_s"] if row["time/backprop_s"] else 0.0
    if "skipped" in opt:
        row["skipped"] = opt["skipped"]
    if ro is not None:
        row["_samples"] = ro.samples  # for the run's sample log; the loop takes it out of the row
    return row


def _step(lrn: Learner, ro: Rollouts | None, bp: dict[str, float], kept: int, total: int, t0: float) -> Row:
    """Optimizer step on the accumulated gradients, weight sync; one metrics row."""
    opt = lrn.optimizer_step(nonfinite=bool(bp["nonfinite"]))
    sync_s = lrn.sync() if "skipped" not in opt else 0.0
    return make_row(lrn, ro, bp, opt, kept, total, t0, sync_s)


def _update(lrn: Learner, ro: Rollouts | None, kept: list, norm: Norm, total: int, t0: float) -> Row:
    """Backprop `kept` with `norm`, then `_step`; everything filtered: no forward pass, no step."""
    if not kept:
        row = make_row(lrn, ro, {}, {"skipped": "all_filtered"}, 0, total, t0, 0.0)
    else:
        row = _step(lrn, ro, lrn.backprop(kept, norm), len(kept), total, t0)
    row["train/grad_samples"] = sum(1 for s in kept if s.advantage != 0)  # trained samples that carry gradient
    return row


def _propose(src: RolloutSource, select: Any, step: int, n: int) -> list[Any]:
    """The next `n` prompts of step `step`: the selector's (`dashrl.select`), or without one the
    task's own batch (`select.name uniform`, the default)."""
    return src.task.batch(step, n) if select is None else select.propose(step, n)[0]


def _observe(select: Any, step: int, examples: Sequence[Any], ro: Rollouts, first_group: int = 0) -> None:
    """Show the selector each sampled group's rewards (and the task's own check), never the completions."""
    if select is None:
        return
    rewards: list[list[float]] = [[] for _ in examples]
    correct: list[list[Any]] = [[] for _ in examples]
    for s in ro.samples:
        rewards[s.group - first_group].append(s.reward)
        correct[s.group - first_group].append(s.info.get("correct"))
    select.observe(step, examples, rewards, correct)


def _selected(row: Row, select: Any, step: int) -> Row:
    """`row` with the selector's metrics of the step (`select/*`), once it has seen all of it."""
    return row if select is None else {**row, **select.end_step(step)}


def _first(src: RolloutSource, step: int, select: Any = None) -> Rollouts:
    """The step's whole M x G batch in one sampling call, shown to the selector."""
    cfg = src.cfg
    examples = _propose(src, select, step, cfg.algo.prompts_per_step)
    ro = src.rollout(examples, sample_seed(cfg.train.seed, step, 0))
    _observe(select, step, examples, ro)
    src.ahead(step + 1)
    return ro


def dash_step(src: RolloutSource, lrn: Learner, step: int, select: Any = None) -> list[Row]:
    t0 = time.perf_counter()
    cfg = lrn.cfg
    ro = _first(src, step, select)
    norm = full_norm(ro.samples, cfg.sampler.max_new_tokens)
    row = _update(lrn, ro, keep(ro.samples, cfg.algo.filter_threshold), norm, len(ro.samples), t0)
    return [_selected(row, select, step)]


def _round(src: RolloutSource, select: Any, step: int, drawn: int, size: int) -> list[Any]:
    """The prompts of a dynamic-sampling round that starts at the step's `drawn`-th prompt: the
    selector's next `size`, or the task's own (the step's batch, then the extras of `prompt_index`)."""
    from dashrl.algo.dapo import prompt_index

    if select is not None:
        return select.propose(step, size)[0]
    M = src.cfg.algo.prompts_per_step
    first = src.task.batch(step, M) if drawn == 0 else []  # round 1 begins with the step's own batch
    return first + [src.task.get(prompt_index(step, j, M)) for j in range(max(drawn, M), drawn + size)]


def dynamic_step(src: RolloutSource, lrn: Learner, step: int, select: Any = None) -> list[Row]:
    """DAPO's dynamic sampling on the `dash` schedule: sample rounds of prompts (the first
    over-sampled by `algo.oversample`, each later one sized from the informative share seen so
    far) until M groups carry gradient or `algo.max_rounds` is reached; train on the first M
    such groups, with the per-sample filter on top. Round r of step s samples the prompts
    `dashrl.algo.dapo.prompt_index(s, j, M)` with seed `sample_seed(seed, s, r)`: a pure
    function of (seed, step, round), so a resumed run samples what the unstopped run did. With a
    selector the rounds draw through it, the first sized from its expected informative share."""
    import torch

    from dashrl.algo.dapo import informative_groups, refill_prompts

    t0 = time.perf_counter()
    cfg = lrn.cfg
    a = cfg.algo
    M, G = a.prompts_per_step, a.group_size
    parts: list[Rollouts] = []
    chosen: list[int] = []  # group ids, in sampling order
    size = math.ceil(M * a.oversample) if select is None else select.first_round(M, a.oversample)
    drawn, rounds = 0, 0
    while rounds < a.max_rounds and len(chosen) < M:
        examples = _round(src, select, step, drawn, size)
        ro = src.rollout(examples, sample_seed(cfg.train.seed, step, rounds), first_group=drawn)
        _observe(select, step, examples, ro, first_group=drawn)
        adv = torch.tensor([s.advantage for s in ro.samples]).view(size, G)  # [B, G]
        chosen += [drawn + b for b in informative_groups(adv).nonzero().flatten().tolist()]
        parts.append(ro)
        drawn, rounds = drawn + size, rounds + 1
        size = refill_prompts(M - len(chosen), len(chosen), drawn)
    chosen_set = set(chosen[:M])
    ro = merge_rollouts(parts)
    batch = [s for s in ro.samples if s.group in chosen_set]
    norm = full_norm(batch, cfg.sampler.max_new_tokens)
    threshold = a.filter_threshold if get_algorithm(a.name).filters else -1.0
    row = _update(lrn, ro, keep(batch, threshold), norm, len(batch), t0)
    cost = [p.metrics.get("time/sampling_s", 0.0) + p.metrics.get("time/scoring_s", 0.0) for p in parts]  # per round
    row.update({"train/groups": len(chosen_set), "dynamic/prompts_sampled": drawn, "dynamic/rounds": rounds,
                "dynamic/cap_hit": int(len(chosen) < M), "dynamic/first_round_s": cost[0],
                "dynamic/refill_s": sum(cost[1:]),
                "dynamic/first_round_prompts": len(parts[0].samples) // G})  # fmt: skip
    return [_selected(row, select, step)]


def grpo_step(src: RolloutSource, lrn: Learner, step: int, select: Any = None) -> list[Row]:
    t0 = time.perf_counter()
    cfg = lrn.cfg
    per = cfg.train.micro_batch_size // cfg.algo.group_size  # prompts per micro-batch
    examples = _propose(src, select, step, cfg.algo.prompts_per_step)
    chunks = [examples[i : i + per] for i in range(0, len(examples), per)]
    parts, totals = [], Totals()
    for j, chunk in enumerate(chunks):  # generation per training micro-batch, as TRL 0.16
        ro = src.rollout(chunk, sample_seed(cfg.train.seed, step, j), first_group=j * per)
        own = full_norm(
            ro.samples, cfg.sampler.max_new_tokens
        )  # each micro-batch normalised by itself, scaled by 1/accumulation
        norm = Norm(own.num_seqs * len(chunks), own.num_tokens * len(chunks), own.max_len)
        totals.add(lrn.backprop(ro.samples, norm), len(ro.samples))
        parts.append(ro)
    ro = merge_rollouts(parts)
    _observe(select, step, examples, ro)
    return [_selected(_step(lrn, ro, totals.result(), len(ro.samples), len(ro.samples), t0), select, step)]


def ppo_multi_cycle(src: RolloutSource, lrn: Learner, cycle: int, select: Any = None) -> list[Row]:
    t0 = time.perf_counter()
    cfg = lrn.cfg
    ro = _first(src, cycle, select)
    kept, norm = keep(ro.samples, cfg.algo.filter_threshold), full_norm(ro.samples, cfg.sampler.max_new_tokens)
    rows = []
    for k in range(cfg.algo.ppo_k):
        rows.append(_update(lrn, ro if k == 0 else None, kept, norm, len(ro.samples), t0))
        t0 = time.perf_counter()
    rows[0] = _selected(rows[0], select, cycle)
    return rows


def ppo_mini_cycle(src: RolloutSource, lrn: Learner, cycle: int, select: Any = None) -> list[Row]:
    t0 = time.perf_counter()
    cfg = lrn.cfg
    M, K = cfg.algo.prompts_per_step, cfg.algo.ppo_k
    ro = _first(src, cycle, select)
    per = M // K
    rows = []
    for k in range(K):
        part = [s for s in ro.samples if k * per <= s.group < (k + 1) * per]
        norm = full_norm(part, cfg.sampler.max_new_tokens)
        rows.append(_update(lrn, ro if k == 0 else None, keep(part, cfg.algo.filter_threshold), norm, len(part), t0))
        t0 = time.perf_counter()
    rows[0] = _selected(rows[0], select, cycle)
    return rows


SFT_DROPS = (
    "filter/kept_frac",
    "gen/sampled_tokens",
    "time/sampling_s",
    "time/scoring_s",
    "tokens/sampled_per_s",
)  # RL-only keys


def sft_step(src: RolloutSource, lrn: Learner, step: int) -> list[Row]:
    t0 = time.perf_counter()
    cfg = lrn.cfg
    ro = _first(src, step)  # the step's M records
    norm = full_norm(ro.samples, cfg.sft.max_tokens or max(s.num_tokens for s in ro.samples))
    bp = lrn.backprop(ro.samples, norm)
    opt = lrn.optimizer_step(nonfinite=bool(bp["nonfinite"]))
    # no sync: nothing samples; the weights go to the sampler when an evaluation asks (SFTSource.eval_sampler)
    row = make_row(lrn, ro, bp, opt, len(ro.samples), len(ro.samples), t0, 0.0)
    for key in SFT_DROPS:
        row.pop(key, None)
    row["sft/epoch"] = (step + 1) * cfg.algo.prompts_per_step / src.task.size
    return [row]


SCHEDULE_FNS: dict[str, Callable[[RolloutSource, Learner, int], list[Row]]] = {
    "dash": dash_step,
    "grpo": grpo_step,
    "ppo_multi": ppo_multi_cycle,
    "ppo_mini": ppo_mini_cycle,
    "sft": sft_step,
    "dynamic": dynamic_step,
}


def schedule_name(cfg: Config) -> str:
    """The schedule `cfg` runs: its algorithm's (`dashrl.algo.registry`), or `dynamic`.

    >>> from dashrl.config import load_config
    >>> (schedule_name(load_config(overrides=["--algo.name", "rloo"])),
    ...  schedule_name(load_config(overrides=["--algo.name", "dapo"])))
    ('dash', 'dynamic')
    """
    return "dynamic" if cfg.algo.dynamic_sampling else get_algorithm(cfg.algo.name).schedule


def schedule_fn(cfg: Config) -> Callable[[RolloutSource, Learner, int], list[Row]]:
    """The step function `cfg` runs (looked up when called)."""
    return SCHEDULE_FNS[schedule_name(cfg)]


def optimizer_steps(name: str, steps: int, ppo_k: int) -> int:
    """Optimizer steps a run of algorithm `name` makes: K per cycle for the PPO schedules, else one per step."""
    return steps * ppo_k if get_algorithm(name).schedule in ("ppo_multi", "ppo_mini") else steps
