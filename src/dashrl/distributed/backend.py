"""The Ray backend of the one training loop: a rollout source and a learner made of actors.

`dashrl.train.loop.train` runs every schedule against a `RolloutSource` and a `Learner`
(`dashrl.train.schedules`). With `--dist.samplers H --dist.trainers H'` those are:

- `RaySource`: one sampling call cuts its prompts into units (`dashrl.distributed.units`) and
  hands them round-robin to the H sampler actors at once (the paper's preemptive sampling
  of the whole batch). Each unit comes back as a small report (texts, token ids,
  lengths) plus one object per group that stays in the Ray object store. The driver
  scores each report as it arrives, while the samplers go on with the other units: the
  reward functions run in the driver process, as in one process, so a function may hold
  state (a client, a cache, a judge model loaded once), need not pickle, and a fault
  stops the run in one line. The driver holds `SampleRef`s, so the schedule filters and
  normalises on the driver, before any forward pass, without the tokens.
- `RayLearner`: `backprop` packs the kept samples into whole-group deliveries, fills the
  rollout store and has every trainer backprop its share; `optimizer_step` all-reduces
  the gradients and steps every trainer alike; `sync` has rank 0 publish its weights as
  numpy arrays once, which every sampler reads in place (one node) and loads.

What survives what:
- a sampler actor that dies is replaced (loaded with the current weights) and its units
  are sampled again with the same seeds: the run is unchanged (`dist/sampler_restarts`);
- a trainer actor that dies: the whole trainer group is rebuilt from the last finished
  step's state (weights and optimizer, published to the object store each step), the
  backprop calls since that step run again, and the run goes on unchanged
  (`dist/trainer_restarts`);
- a driver that dies: the run resumes from its last checkpoint (`--resume`), which holds
  rank 0's optimizer (every rank holds the same), scheduler, RNG and data position.

Overlap (`--dist.overlap N`, default 0 = exact on-policy DASH): after a step's batch is
sampled, the next N steps' batches are submitted at once, on the weights the samplers
hold, so sampling runs while the trainers backprop; each sample records the policy
version (optimizer steps) that drew it, and `dist/staleness_mean` logs the lag. The lag
is corrected with the PPO-clip ratio against the stored sampling logprobs (`--algo.loss
ppo_clip`, required): those logprobs are already stored per token, so the correction
costs no extra forward pass, and the clip bounds the step when the ratio drifts, which
truncated importance weights on a plain policy gradient would not. Filtering still runs
on the driver before any forward pass. A checkpoint waits for the batches sampled ahead
and keeps them (`AHEAD_KEY` in the learner state), so a resumed overlap run trains on the
very batches the uninterrupted run drew, and ends with the same weights. Two things do
differ from an undisturbed overlap run: a sampler that dies during a batch drawn ahead is
replaced with the newest weights, so its units are re-drawn on a newer policy (recorded
per sample, and corrected by the ratio like any lag); and a run resumed with a larger
`train.steps` samples its first new step on the resumed weights, as nothing was drawn
past the old last step.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Any, Iterator, Sequence

from dashrl.algo import Norm
from dashrl.config import Config
from dashrl.distributed.actors import SamplerWorker, TrainerWorker, weights_from_numpy
from dashrl.distributed.store import Delivery, RolloutStore
from dashrl.distributed.units import TrainReport, UnitResult, check_deliveries, pack_groups, plan_units, score_report
from dashrl.rollout.samples import Rollouts, Sample, SampleRef, rollout_metrics

MAX_UNIT_RETRIES = 3
MAX_TRAINER_RESTARTS = 3  # per backprop/step call
AHEAD_KEY = "dist_ahead"  # in the learner's checkpoint state: batches sampled ahead (dist.overlap)


def _log(msg: str) -> None:
    print(f"[dashrl.distributed] {msg}", file=sys.stderr, flush=True)


def connect(cfg: Config) -> bool:
    """Join `dist.address`, or start a local cluster sized for the actors; True if this call
    connected (then `ray.shutdown()` at the end stops a local cluster, or only disconnects).
    Workers get this process's PYTHONPATH, so they import the same dashrl, and its OpenMP
    settings (`dashrl.runtime.openmp`), chosen before their torch loads."""
    import ray

    d = cfg.dist
    if ray.is_initialized():  # the caller's cluster (tests): theirs to shut down
        return False
    from dashrl.runtime import openmp

    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env_vars = {
        **({"PYTHONPATH": os.pathsep.join(paths)} if paths else {}),
        **openmp.inherited(),
    }  # the driver's OpenMP choice
    env = {"env_vars": env_vars} if env_vars else None
    if d.address:
        ray.init(address=d.address, log_to_driver=False, runtime_env=env)
        return True
    cpus = math.ceil(d.samplers * d.cpus_per_sampler + d.trainers * d.cpus_per_trainer)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
    return True


class Cluster:
    """Handles of the actors of one run, the newest published state, and how to replace actors."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, task: Any, optimizer_steps: int, make_learner: Any):
        import ray

        d = cfg.dist
        self.cfg, self.tokenizer, self.task, self.optimizer_steps = cfg, tokenizer, task, optimizer_steps
        self.make_learner = make_learner  # what each trainer actor wraps (the loop's `Trainer`)
        self.model_ref = ray.put(model)  # the initial model: every actor starts from it (and its KL reference)
        self.weights_ref: Any = None  # newest published weights (numpy arrays), None = the initial ones
        self.state_ref: Any = None  # rank 0's trainer state of the same step
        self.version = 0  # optimizer steps of the newest weights
        self.ahead: dict[
            tuple[int, int, int], Any
        ] = {}  # sampling calls started early (dist.overlap): _Job or _Sampled
        self._sampler_cls = ray.remote(SamplerWorker).options(num_cpus=d.cpus_per_sampler, num_gpus=d.gpus_per_sampler)
        self._trainer_cls = ray.remote(TrainerWorker).options(num_cpus=d.cpus_per_trainer, num_gpus=d.gpus_per_trainer)
        self.samplers = [self._new_sampler(i) for i in range(d.samplers)]
        self.store = ray.remote(RolloutStore).options(num_cpus=0).remote()
        self.trainers: list[Any] = []
        self.start_trainers()
        ray.get([s.ready.remote() for s in self.samplers])

    # -- samplers -------------------------------------------------------------------------
    def _new_sampler(self, i: int) -> Any:
        actor = self._sampler_cls.remote(self.cfg, self.model_ref, self.tokenizer, self.task, i)
        if self.weights_ref is not None:
            actor.load_weights.remote(self.weights_ref, self.version)
        return actor

    def restart_sampler(self, i: int) -> None:
        import ray

        ray.kill(self.samplers[i], no_restart=True)
        self.samplers[i] = self._new_sampler(i)

    # -- trainers -------------------------------------------------------------------------
    def start_trainers(self) -> None:
        """(Re)build the trainer group: fresh actors, one torch.distributed group, the newest state."""
        import ray

        d = self.cfg.dist
        for t in self.trainers:
            ray.kill(t, no_restart=True)
        self.trainers = [
            self._trainer_cls.remote(
                self.cfg,
                self.make_learner,
                self.model_ref,
                self.tokenizer,
                self.task,
                self.optimizer_steps,
                r,
                d.trainers,
            )
            for r in range(d.trainers)
        ]
        backend = d.backend if d.backend != "auto" else ("nccl" if d.gpus_per_trainer > 0 else "gloo")
        addr = ray.get(self.trainers[0].rendezvous.remote())
        ray.get([t.init_group.remote(addr, backend) for t in self.trainers])
        if self.weights_ref is not None:
            ray.get([t.restore.remote(self.weights_ref, self.state_ref) for t in self.trainers])

    def publish(self) -> None:
        """Rank 0's weights and trainer state into the object store, once; samplers read them
        from there. Sharded (`dist.shard = "full"`), every rank takes part in gathering them."""
        publishers = self.trainers if self.cfg.dist.shard == "full" else self.trainers[:1]
        refs = [t.publish.options(num_returns=2).remote() for t in publishers]
        self.weights_ref, self.state_ref = refs[0]

    def pull(self, policy: Any) -> None:
        """Load the newest published weights into `policy` (the driver's `dashrl.policy.Policy`)."""
        import ray

        if self.weights_ref is not None:
            policy.load_state_dict(weights_from_numpy(ray.get(self.weights_ref)))

    def close(self) -> None:
        import ray

        try:
            ray.get([t.close.remote() for t in self.trainers], timeout=30)
        except Exception:  # a dead trainer: nothing left to close
            pass
        for actor in [*self.samplers, *self.trainers, self.store]:
            ray.kill(actor, no_restart=True)


class RaySource:
    """`RolloutSource` on sampler actors."""

    def __init__(self, cl: Cluster, policy: Any):
        self.cl, self.cfg, self.task, self.policy = cl, cl.cfg, cl.task, policy
        self._eval_sampler: Any = None

    def rollout(self, examples: Sequence[Any], seed: int, first_group: int = 0) -> Rollouts:
        """Sample on the actors exactly what `Trainer.rollout(examples, seed, first_group)` samples
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
        """A sampler on the driver's policy, loaded with the newest weights."""
        from dashrl.rollout import make_sampler

        p = self.policy
        self.cl.pull(p)
        if self._eval_sampler is None:
            self._eval_sampler = make_sampler(
                self.cfg.sampler.backend,
                model=p.sampler_model(),
                tokenizer=self.cl.tokenizer,
                dtype=self.cfg.model.dtype,
            )
        self._eval_sampler.load_weights(p.sampler_weights())
        return self._eval_sampler


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
                    _log(f"sampler {i} died while sampling; restarting it and sampling its units again")
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
    return [[int(t) for t in s.prompt_ids], [int(t) for t in s.completion_ids], [float(x) for x in s.logprobs],
            float(s.reward), float(s.advantage), int(s.group), str(s.finish_reason), int(s.version)]  # fmt: skip


def import_ahead(cl: Cluster, saved: list[dict[str, Any]]) -> None:
    """Put checkpointed batches back: groups into the object store, records as `collect` gave them."""
    import ray

    cl.ahead.clear()
    for entry in saved:
        refs = {g: ray.put([Sample(*m) for m in members]) for g, members in entry["groups"]}
        samples = [SampleRef(g, i, r, a, n, f, refs[g], v) for g, i, r, a, n, f, v in entry["refs"]]
        cl.ahead[tuple(entry["key"])] = _Sampled(Rollouts(samples, dict(entry["metrics"])))


class TrainerDied(Exception):
    pass


class RayLearner:
    """`Learner` on a group of trainer actors that all-reduce gradients.

    Keeps the backprop calls since the last optimizer step, so that a rebuilt trainer
    group (after a death) replays them from the last finished step's state.
    """

    def __init__(self, cl: Cluster, policy: Any, tokenizer: Any):
        self.cl, self.cfg, self.policy, self.tokenizer = cl, cl.cfg, policy, tokenizer
        self.model = policy.module
        self.deliveries: list[Delivery] = []
        self.trainer_restarts = 0
        self._pending: list[tuple[list[Any], Norm]] = []  # backprop calls since the last step
        self._mark = 0  # len(deliveries) at the last step: replays log their deliveries again
        self._calls = 0
        self._restarts_at_step = 0

    # -- the Learner interface --------------------------------------------------------------
    def backprop(self, samples: Sequence[SampleRef], norm: Norm) -> dict[str, float]:
        self._pending.append((list(samples), norm))
        reps = self._with_restarts(lambda: self._backprop(list(samples), norm), replay_pending=False)
        return self._combine(reps)

    def optimizer_step(self, nonfinite: bool) -> dict[str, Any]:
        import ray

        outs = self._with_restarts(
            lambda: self._wait([t.optimizer_step.remote(nonfinite) for t in self.cl.trainers]), replay_pending=True
        )
        self._pending, self._mark = [], len(self.deliveries)
        opt = dict(outs[0])
        for r, o in enumerate(outs):
            opt[f"dist/trainer{r}/allreduce_s"] = o["allreduce_s"]
        opt.pop("allreduce_s")
        opt["dist/trainer_restarts"] = self.trainer_restarts - self._restarts_at_step  # this step's, backprop included
        self._restarts_at_step = self.trainer_restarts
        if "skipped" not in opt:
            self.cl.version += 1
        self.cl.publish()  # the state a replaced trainer restarts from (also after a skipped step)
        ray.wait([self.cl.state_ref], num_returns=1)
        return opt

    def sync(self) -> float:
        """Every sampler loads rank 0's published weights (one object, read in place); seconds."""
        import ray

        cl = self.cl
        t0 = time.perf_counter()
        for i, ref in enumerate([s.load_weights.remote(cl.weights_ref, cl.version) for s in cl.samplers]):
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                _log(f"sampler {i} died while loading weights; restarting it")
                cl.restart_sampler(i)  # the new actor loads cl.weights_ref itself
        return time.perf_counter() - t0

    def lr(self) -> float:
        """Rank 0's learning rate for the next step (asked only when a step has no optimizer step)."""
        return self._with_restarts(lambda: self._wait([self.cl.trainers[0].lr.remote()])[0], replay_pending=True)

    def state_dict(self) -> dict[str, Any]:
        """Rank 0's optimizer, scheduler and counters (every rank holds the same), and with
        `dist.overlap` the batches already sampled ahead (waited for: `AHEAD_KEY`); also
        pulls the newest weights into `self.policy`, which the checkpoint saves."""
        import ray

        from dashrl.distributed.actors import state_from_numpy

        self.cl.pull(self.policy)
        if self.cl.state_ref is None:
            self.cl.publish()
        state = ray.get(self.cl.state_ref)
        state = state_from_numpy(state)
        ahead = export_ahead(self.cl)
        return {**state, AHEAD_KEY: ahead} if ahead else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Give every trainer `self.policy`'s weights (the loop loaded the checkpoint into it) and `state`."""
        import ray

        from dashrl.distributed.actors import state_to_numpy, weights_to_numpy

        cl = self.cl
        state = dict(state)
        import_ahead(cl, state.pop(AHEAD_KEY, []))
        cl.weights_ref, cl.state_ref = (
            ray.put(weights_to_numpy(self.policy.state_dict())),
            ray.put(state_to_numpy(state)),
        )
        cl.version = int(state["scheduler"]["last_epoch"])
        ray.get([t.restore.remote(cl.weights_ref, cl.state_ref) for t in cl.trainers])

    # -- inside ---------------------------------------------------------------------------
    def _backprop(self, samples: list[SampleRef], norm: Norm) -> list[TrainReport]:
        import ray

        cl = self.cl
        members: dict[int, tuple[Any, list[int], list[float]]] = {}  # group -> (object ref, member indices, advantages)
        for s in samples:
            ref, idx, advs = members.setdefault(s.group, (s.ref, [], []))
            idx.append(s.index)
            advs.append(s.advantage)
        kept = {g: len(idx) for g, (_, idx, _) in members.items()}
        packs = pack_groups(sorted(kept.items()), self.cfg.train.micro_batch_size)
        deliveries = [(gs, sum(kept[g] for g in gs), [members[g] for g in gs]) for gs in packs]
        call = self._calls
        self._calls += 1
        ray.get(cl.store.fill.remote(call, deliveries, len(cl.trainers)))
        reps = self._wait([t.backprop.remote(call, norm, cl.store) for t in cl.trainers])
        got = [d for rep in reps for d in rep.deliveries]
        check_deliveries(call, got, kept)
        self.deliveries.extend(got)
        return reps

    def _wait(self, refs: list[Any]) -> list[Any]:
        """Results of one call on every trainer, in rank order; TrainerDied names the first dead one."""
        import ray

        rank_of = {ref: r for r, ref in enumerate(refs)}
        out: dict[int, Any] = {}
        remaining = list(refs)
        while remaining:  # as they finish: a dead trainer is seen at once, not after the others time out
            ready, remaining = ray.wait(remaining, num_returns=1)
            try:
                out[rank_of[ready[0]]] = ray.get(ready[0])
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.RayTaskError,
            ) as e:  # dead, or an all-reduce broken by a dead peer
                raise TrainerDied(
                    f"trainer actor {rank_of[ready[0]]}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                ) from None
        return [out[r] for r in range(len(refs))]

    def _with_restarts(self, call: Any, replay_pending: bool) -> Any:
        """Run `call`; if a trainer dies, rebuild the group from the last finished step and
        replay the backprop calls since then (all of them before an optimizer step, the
        earlier ones before a backprop call, which `call` itself then redoes)."""
        for attempt in range(MAX_TRAINER_RESTARTS + 1):
            try:
                return call()
            except TrainerDied as e:
                if attempt == MAX_TRAINER_RESTARTS:
                    raise RuntimeError(
                        f"{e}; gave up after {MAX_TRAINER_RESTARTS} trainer group rebuilds in one call"
                    ) from None
                self.trainer_restarts += 1
                _log(f"{e}; rebuilding the trainer group from step {self.cl.version} and running the step again")
                self.cl.start_trainers()
                del self.deliveries[self._mark :]
                replay = self._pending if replay_pending else self._pending[:-1]
                try:
                    for samples, norm in replay:
                        self._backprop(samples, norm)
                except TrainerDied:
                    continue
        raise AssertionError("unreachable")

    def _combine(self, reps: list[TrainReport]) -> dict[str, float]:
        """Ranks' backprop metrics as one process would report them (time: the slowest rank)."""
        from dashrl.totals import Totals

        totals = Totals()
        for rep in reps:
            totals.add(rep.totals, int(rep.totals.get("train/samples", 0)))
        out = totals.result()
        out["time/backprop_s"] = max((r.backprop_s for r in reps), default=0.0)
        out["nonfinite"] = float(out.get("nonfinite", 0.0) > 0)
        for rep in reps:
            out[f"dist/trainer{rep.rank}/queue_wait_s"] = rep.queue_wait_s
            out[f"dist/trainer{rep.rank}/backprop_s"] = rep.backprop_s
        return out


@contextlib.contextmanager
def ray_backend(
    cfg: Config, model: Any, tokenizer: Any, task: Any, optimizer_steps: int, make_learner: Any
) -> Iterator[tuple[RaySource, RayLearner]]:
    """Connect to (or start) Ray, start the actors, each trainer actor around
    `make_learner(cfg, model, tokenizer, optimizer_steps, task=task)`; yields `(source,
    learner)`. On the way out the driver's `model` (through its policy) gets the newest
    weights, then the actors (and a cluster this call started) go away."""
    import ray

    started = connect(cfg)
    cl = None
    try:
        if not cfg.run.quiet:
            _log(f"{cfg.dist.samplers} samplers, {cfg.dist.trainers} trainers")
        from dashrl.policy import make_policy

        cl = Cluster(cfg, model, tokenizer, task, optimizer_steps, make_learner)  # the actors get the model as it is
        policy = make_policy(cfg, model, reference=False)  # the driver's: checkpoints, evaluation, the final weights
        yield RaySource(cl, policy), RayLearner(cl, policy, tokenizer)
        cl.pull(policy)
    finally:
        if cl is not None:
            cl.close()
        if started:
            ray.shutdown()
