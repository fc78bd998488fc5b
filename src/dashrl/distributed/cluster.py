"""`Cluster`: the handles of one run's Ray actors (sampler and trainer actors, the rollout store),
the newest state rank 0 published, and how a dead actor is replaced. The source
(`dashrl.distributed.source`) and the learner (`dashrl.distributed.backend`) both drive it.
"""

from __future__ import annotations

import sys
from typing import Any

from dashrl.config import Config
from dashrl.distributed.actors import SamplerWorker, TrainerWorker, weights_from_numpy
from dashrl.distributed.store import RolloutStore


def log(msg: str) -> None:
    print(f"[dashrl.distributed] {msg}", file=sys.stderr, flush=True)


class Cluster:
    """Handles of the actors of one run, the newest published state, and how to replace actors."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, task: Any, optimizer_steps: int, make_learner: Any):
        import ray

        d = cfg.dist
        self.cfg, self.tokenizer, self.task, self.optimizer_steps = cfg, tokenizer, task, optimizer_steps
        self.make_learner = make_learner  # what each trainer actor wraps (`dashrl.train.learner.Learner`)
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
        env = getattr(self.task, "env", None)  # an environment given in Python travels by value; None: [env]'s path
        actor = self._sampler_cls.remote(self.cfg, self.model_ref, self.tokenizer, i, env)
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
