"""The Ray backend of the one training loop: a rollout source and a learner made of actors.

`dashrl.train.loop.train` runs every schedule against a `RolloutSource` and a `Learner`
(`dashrl.train.schedules`). With `--dist.samplers H --dist.trainers H'` those are:

- `RaySource` (`dashrl.distributed.source`): one sampling call cuts its prompts into units
  (`dashrl.distributed.units`) and hands them round-robin to the H sampler actors at once (the
  paper's preemptive sampling of the whole batch). Each unit comes back as a small report (texts, token ids,
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
import time
from typing import Any, Iterator, Sequence

from dashrl.algo import Norm
from dashrl.config import Config
from dashrl.distributed.cluster import Cluster, log
from dashrl.distributed.source import RaySource, export_ahead, import_ahead
from dashrl.distributed.store import Delivery
from dashrl.distributed.units import TrainReport, check_deliveries, pack_groups
from dashrl.rollout.samples import SampleRef

MAX_TRAINER_RESTARTS = 3  # per backprop/step call
AHEAD_KEY = "dist_ahead"  # in the learner's checkpoint state: batches sampled ahead (dist.overlap)


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
                log(f"sampler {i} died while loading weights; restarting it")
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
                log(f"{e}; rebuilding the trainer group from step {self.cl.version} and running the step again")
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
    `make_learner(cfg, model, tokenizer, optimizer_steps)`; yields `(source,
    learner)`. On the way out the driver's `model` (through its policy) gets the newest
    weights, then the actors (and a cluster this call started) go away."""
    import ray

    started = connect(cfg)
    cl = None
    try:
        if not cfg.run.quiet:
            log(f"{cfg.dist.samplers} samplers, {cfg.dist.trainers} trainers")
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
