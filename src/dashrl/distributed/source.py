"""The Ray rollout source: `RaySource` (a `RolloutSource` of `dashrl.train.schedules`) on the
sampler actors of a `dashrl.distributed.cluster.Cluster`.

One sampling call cuts its prompts into units (`dashrl.distributed.units`) and hands them
round-robin to the H sampler actors at once (`_Job`); the driver scores each unit's report as
it arrives, while the samplers go on with the rest. A sampler that dies is replaced and its
units sampled again with the same seeds. With `dist.overlap` the next steps' calls start
early (`RaySource.ahead`); a checkpoint keeps the batches drawn ahead (`export_ahead`,
`import_ahead`), so a resumed run trains on the very batches the uninterrupted run drew.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from dashrl.distributed.units import UnitResult, plan_units, score_report
from dashrl.distributed.cluster import log
from dashrl.rollout.samples import Rollouts, Sample, SampleRef, rollout_metrics

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.distributed.cluster import Cluster

MAX_UNIT_RETRIES = 3


class RaySource:
    """`RolloutSource` on sampler actors."""

    def __init__(self, cl: Cluster, policy: Any):
        self.cl, self.cfg, self.task, self.policy = cl, cl.cfg, cl.task, policy
        self._eval_host: Any = None

    def rollout(self, examples: Sequence[Any], seed: int, first_group: int = 0) -> Rollouts:
        """Sample on the actors exactly what `LocalSource.rollout(examples, seed, first_group)` samples
        (with the weights the samplers held when the call was submitted: see `ahead`)."""
        t0 = time.perf_counter()
        job = self.cl.ahead.pop((seed, first_group, len(examples)), None) or _Job(
            self.cl, list(examples), seed, first_group
        )
        ro = job.collect(t0)
        ro.metrics["dist/staleness_mean"] = sum(self.cl.version - s.version for s in ro.samples) / max(
            len(ro.samples), 1
        )
        return ro

    def ahead(self, step: int) -> None:
        """With `dist.overlap` N > 0, start sampling steps `step .. step + N - 1` now, on the
        weights the samplers hold: their units queue on the samplers ahead of the next
        weight load, so they run while the trainers backprop the current step."""
        from dashrl.rollout.samples import sample_seed

        cfg = self.cfg
        for s in range(step, min(step + cfg.dist.overlap, cfg.train.steps)):
            seed = sample_seed(cfg.train.seed, s, 0)
            key = (seed, 0, cfg.algo.prompts_per_step)
            if key not in self.cl.ahead:
                self.cl.ahead[key] = _Job(self.cl, self.task.batch(s, cfg.algo.prompts_per_step), seed, 0)

    def hold(self, samples: Sequence[Any]) -> list[SampleRef]:
        """Samples made on the driver (the sft schedule's records) as `SampleRef`s: each goes
        into the object store as a group of one, which the trainers fetch like a sampled group."""
        import ray

        return [
            SampleRef(s.group, 0, s.reward, s.advantage, s.num_tokens, s.finish_reason, ray.put([s]), s.version)
            for s in samples
        ]

    def eval_sampler(self) -> Any:
        """A sampler on the driver's policy (a `SamplerHost`, made on first use), loaded with the newest weights."""
        from dashrl.rollout.samples import SamplerHost

        p = self.policy
        self.cl.pull(p)
        if self._eval_host is None:
            self._eval_host = SamplerHost(self.cfg, p, self.cl.tokenizer)
        self._eval_host.load_weights(p.sampler_weights(), self.cl.version)
        return self._eval_host.sampler

    def warm_up(self) -> float:
        """The sampler actors warm up on their first unit; the driver's grader on its first report."""
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the batches sampled ahead travel in the learner's state (`AHEAD_KEY`)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore (see `state_dict`)."""


class _Job:
    """One sampling call's units, submitted to the samplers; `collect` waits for them (once)."""

    def __init__(self, cl: Cluster, examples: list[Any], seed: int, first_group: int):
        self.cl, self.examples, self.seed, self.first_group = cl, examples, seed, first_group
        self.G = cl.cfg.algo.group_size
        self.pending: dict[Any, tuple] = {}
        self.tries: dict[int, int] = {}
        self.result: Rollouts | None = None
        for unit in plan_units(len(examples), self.G, cl.cfg.sampler.batch_size):
            self.submit(
                unit, unit.index % len(self.cl.samplers)
            )  # deterministic split; the samples do not depend on it

    def submit(self, unit: Any, i: int) -> None:
        actor = self.cl.samplers[i]
        refs = actor.sample.options(num_returns=1 + unit.num_groups).remote(
            unit, self.examples[unit.first_group : unit.first_group + unit.num_groups], self.seed, self.first_group
        )
        self.pending[refs[0]] = (unit, i, actor, refs[1:])

    def collect(self, t0: float) -> Rollouts:
        if self.result is None:
            self.result = self._collect(t0)
        return self.result

    def _collect(self, t0: float) -> Rollouts:
        import ray

        from dashrl.algo.advantages import advantages_of

        cl, H = self.cl, len(self.cl.samplers)
        reports: list[tuple[UnitResult, list]] = []
        restarts = 0
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            unit, i, actor, refs = self.pending.pop(ready[0])
            try:
                report = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                self.tries[unit.index] = self.tries.get(unit.index, 0) + 1
                if self.tries[unit.index] > MAX_UNIT_RETRIES:
                    raise RuntimeError(
                        f"unit {unit.index} killed {MAX_UNIT_RETRIES + 1} sampler actors; last error: {e}"
                    ) from None
                if cl.samplers[i] is actor:  # first failure seen from this actor: replace it
                    restarts += 1
                    log(f"sampler {i} died while sampling; restarting it and sampling its units again")
                    cl.restart_sampler(i)
                self.submit(unit, (i + 1) % H)
                continue
            # rewards run here, in the driver, while the samplers go on with the other units
            examples = self.examples[unit.first_group : unit.first_group + unit.num_groups]
            reports.append((score_report(report, examples, cl.task.grade, self.G, advantages_of(cl.cfg)), refs))
        reports.sort(key=lambda r: r[0].unit)
        samples = [s for rep, refs in reports for s in rep.refs(refs, self.G)]
        # Scoring runs in the driver, as each unit arrives, while the samplers work on the rest.
        scoring_s = sum(rep.scoring_s for rep, _ in reports)
        metrics: dict[str, float] = {
            **rollout_metrics(samples),
            **_env_metrics(samples),
            "time/sampling_s": time.perf_counter() - t0 - scoring_s,
            "time/scoring_s": scoring_s,
        }
        metrics["dist/sampler_restarts"] = restarts
        for i in range(H):
            mine = [rep for rep, _ in reports if rep.worker == i]
            busy = sum(r.sampling_s for r in mine)
            metrics[f"dist/sampler{i}/time_s"] = busy
            metrics[f"dist/sampler{i}/tokens_per_s"] = sum(sum(r.lengths) for r in mine) / busy if busy else 0.0
        return Rollouts(samples, metrics)


class _Sampled:
    """A batch sampled ahead that a checkpoint kept: `collect` gives it as it was drawn."""

    def __init__(self, ro: Rollouts):
        self.ro = ro

    def collect(self, t0: float) -> Rollouts:
        return self.ro


def export_ahead(cl: Cluster) -> list[dict[str, Any]]:
    """The batches sampled ahead (waited for), as plain lists and numbers for a checkpoint:
    per batch its key, metrics, driver-side records and every group's samples."""
    import ray

    out = []
    for key, job in cl.ahead.items():
        ro = job.collect(time.perf_counter())
        refs: dict[int, Any] = {}
        for s in ro.samples:
            refs.setdefault(s.group, s.ref)
        groups = ray.get(list(refs.values()))
        out.append({
            "key": list(key),
            "metrics": {k: float(v) for k, v in ro.metrics.items()},
            "refs": [
                [s.group, s.index, float(s.reward), float(s.advantage), int(s.num_tokens), str(s.finish_reason),
                 int(s.version)]
                for s in ro.samples
            ],
            "groups": [[g, [_plain(x) for x in members]] for g, members in zip(refs, groups)],
        })  # fmt: skip
        cl.ahead[key] = _Sampled(ro)
    return out


def _plain(s: Sample) -> list[Any]:
    out = [[int(t) for t in s.prompt_ids], [int(t) for t in s.completion_ids], [float(x) for x in s.logprobs],
           float(s.reward), float(s.advantage), int(s.group), str(s.finish_reason), int(s.version)]  # fmt: skip
    return out if s.mask is None else [*out, {}, [int(m) for m in s.mask]]  # a multi-turn sample keeps its mask


def import_ahead(cl: Cluster, saved: list[dict[str, Any]]) -> None:
    """Put checkpointed batches back: groups into the object store, records as `collect` gave them."""
    import ray

    cl.ahead.clear()
    for entry in saved:
        refs = {g: ray.put([Sample(*m) for m in members]) for g, members in entry["groups"]}
        samples = [SampleRef(g, i, r, a, n, f, refs[g], v) for g, i, r, a, n, f, v in entry["refs"]]
        cl.ahead[tuple(entry["key"])] = _Sampled(Rollouts(samples, dict(entry["metrics"])))


def _env_metrics(samples: Sequence[SampleRef]) -> dict[str, float]:
    """Tool and turn counts of multi-turn samples (`info["env"]`, from the samplers); {} for single-turn ones."""
    sent = [s.info.get("env") for s in samples]
    if not sent or sent[0] is None:
        return {}
    from dashrl.env.rollout import Counts, env_metrics

    return env_metrics([Counts(e["calls"], e["errors"], e["model_turns"], e["finish_reason"]) for e in sent])
