"""The three Ray actors of a distributed run, as plain classes (`ray.remote` wraps them in
`dashrl.distributed.backend`, so importing this module needs no Ray).

- `SamplerWorker`: its own copy of the policy (`dashrl.policy.Policy`) under a
  `dashrl.rollout.samples.SamplerHost` (the sampler on the policy's sampling weights, as one
  process holds it); samples whole units (see `dashrl.distributed.units`),
  which the driver scores; reloads weights once per step.
- `RolloutStore` (in `dashrl.distributed.store`): the queue trainers fetch deliveries from.
- `TrainerWorker`: a learner (the caller's `make_learner`: `dashrl.train.learner.Learner`
  in `dashrl train`, here given no sampler) that backprops what it fetches from the
  store, then all-reduces gradients with torch.distributed and takes the optimizer step; every trainer steps on
  the same summed gradient, so all hold the same weights. Rank 0 publishes its policy's
  trained weights (numpy arrays, read in place by samplers on its node; the adapters only
  with LoRA) and its optimizer state once per step. With `dist.shard = "full"` each holds
  a shard of the weights, gradients and optimizer state (FSDP2, `dashrl.policy`): FSDP
  sums the gradients (reduce-scatter) during backward, and publishing gathers the whole
  state once per step, every rank taking part and rank 0 returning it.

This package imports nothing from `dashrl.train`: the loop hands the learner class in,
so the training loop sits above its transport (`tests/unit/test_import_graph.py`).
"""

from __future__ import annotations

import dataclasses

import socket
import time
from typing import Any, Mapping

import torch

from dashrl.algo import Norm
from dashrl.config import Config
from dashrl.distributed.units import TrainReport, Unit, sample_env_unit, sample_unit
from dashrl.totals import Totals


def _place(model: Any, gpus: float, cpus: float, first_core: int | None = None) -> Any:
    """Threads (and from `first_core` on, cores: `dist.pin_cores`) for this actor, the model on its device."""
    threads = max(1, int(cpus))
    if first_core is not None:
        pin_cores(first_core, threads)
    torch.set_num_threads(threads)
    return model.to("cuda") if gpus > 0 else model


def pin_cores(first: int, n: int) -> list[int]:
    """Pin this process (every thread it has, and so those they start) to `n` cores from
    the `first`-th on, wrapping round the cores it may use; returns them. Samplers take
    cores 0.., trainers the ones after all samplers'."""
    import os

    cores = sorted(os.sched_getaffinity(0))
    mine = sorted({cores[(first + i) % len(cores)] for i in range(n)})
    os.sched_setaffinity(0, mine)
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # pragma: no cover - no /proc: the calling thread only
        threads = []
    for tid in threads:
        try:
            os.sched_setaffinity(tid, mine)
        except OSError:  # a thread that ended meanwhile
            pass
    return mine


class SamplerWorker:
    """One inference worker: its own policy copy under a `SamplerHost` (the sampler, its
    settings and prompt cache, as one process holds them)."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, index: int, env: Any = None):
        from dashrl.policy import make_policy
        from dashrl.rollout.samples import SamplerHost, env_of

        self.cfg, self.index = cfg, index
        d = cfg.dist
        first = index * max(1, int(d.cpus_per_sampler)) if d.pin_cores else None
        model = _place(model, d.gpus_per_sampler, d.cpus_per_sampler, first).requires_grad_(False).eval()
        env = env if env is not None else env_of(cfg, None)  # given in Python, else [env]'s by path
        self.host = SamplerHost(cfg, make_policy(cfg, model, reference=False), tokenizer, env)

    def ready(self) -> int:
        return self.index

    def load_weights(self, state: Mapping[str, Any], version: int = 0) -> float:
        """Load the step's weights: numpy arrays read in place from the object store
        (`weights_to_numpy`), copied once into the sampler (merged first with LoRA); returns seconds."""
        t0 = time.perf_counter()
        self.host.load_weights(self.host.policy.for_sampler(weights_from_numpy(state)), version)
        return time.perf_counter() - t0

    def sample(self, unit: Unit, examples: list, seed: int, group_offset: int) -> tuple:
        """Returns `(UnitResult, samples of group 0, of group 1, ...)`: one object each."""
        h = self.host
        if h.env is not None:  # multi-turn: the environment runs here, beside the sampler
            report, groups = sample_env_unit(h, examples, unit, seed, group_offset)
            report.worker = self.index
            return (report, *groups)
        report, groups = sample_unit(h.sampler, h.prompt_ids, None, examples, unit, self.cfg.algo.group_size, h.params,
                                     seed, h.advantages, group_offset, h.version)  # fmt: skip  # scored on the driver
        report.worker = self.index
        return (report, *groups)


def weights_to_numpy(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A state dict as CPU numpy arrays (bf16 as its raw int16 bits, with a `.bf16` suffix):
    Ray stores numpy arrays so that every actor on the node reads the same memory."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        out[k + ".bf16" if v.dtype == torch.bfloat16 else k] = (
            v.view(torch.int16) if v.dtype == torch.bfloat16 else v
        ).numpy()
    return out


def weights_from_numpy(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of `weights_to_numpy`; the tensors view the (read-only) arrays, no copy."""
    import warnings

    out: dict[str, torch.Tensor] = {}
    with warnings.catch_warnings():  # read-only object-store memory: load_state_dict only reads it
        warnings.simplefilter("ignore", UserWarning)
        for k, v in state.items():
            t = torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v
            out[k[: -len(".bf16")] if k.endswith(".bf16") else k] = t.view(torch.bfloat16) if k.endswith(".bf16") else t
    return out


def state_to_numpy(obj: Any) -> Any:
    """A nested state (optimizer, scheduler, counters) with every tensor as a numpy array
    (bf16 as `{"bf16": int16 bits}`): Ray writes arrays into the object store in one copy,
    where pickled tensors take another in the actor first."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu")
        return {"bf16": t.view(torch.int16).numpy()} if t.dtype == torch.bfloat16 else t.numpy()
    if isinstance(obj, dict):
        return {k: state_to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(state_to_numpy(v) for v in obj)
    return obj


def state_from_numpy(obj: Any) -> Any:
    """Inverse of `state_to_numpy`, with tensors of their own (writable: the optimizer updates them in place).

    >>> s = state_from_numpy(
    ...     state_to_numpy({"step": torch.tensor(3.0), "m": [torch.ones(2, dtype=torch.bfloat16)], "n": 1})
    ... )
    >>> s["step"], s["m"][0].dtype, s["n"]
    (tensor(3.), torch.bfloat16, 1)
    """
    import numpy as np

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, dict):
        if obj.keys() == {"bf16"} and isinstance(obj["bf16"], np.ndarray):
            return torch.from_numpy(np.array(obj["bf16"])).view(torch.bfloat16)
        return {k: state_from_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(state_from_numpy(v) for v in obj)
    return obj


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class TrainerWorker:
    """One data-parallel backprop worker around `make_learner(cfg, model, tokenizer,
    optimizer_steps)`: an object with `policy`, `optimizer`, `backprop`,
    `optimizer_step`, `lr`, `state_dict` and `load_state_dict` (the `Learner`)."""

    def __init__(
        self,
        cfg: Config,
        make_learner: Any,
        model: Any,
        tokenizer: Any,
        optimizer_steps: int,
        rank: int,
        world: int,
    ):
        self.rank, self.world = rank, world
        d = cfg.dist
        self.sharded = d.shard == "full"
        first = (
            d.samplers * max(1, int(d.cpus_per_sampler)) + rank * max(1, int(d.cpus_per_trainer))
            if d.pin_cores
            else None
        )
        model = _place(model, d.gpus_per_trainer, d.cpus_per_trainer, first)
        self._learner_args = (cfg, model, tokenizer, optimizer_steps)
        self._make_learner = make_learner
        self.trainer: Any = None  # built by `init_group`: a sharded learner needs the process group

    def rendezvous(self) -> str:
        """`tcp://IP:PORT` of a free port on this node, for torch.distributed's TCP store."""
        import ray

        return f"tcp://{ray.util.get_node_ip_address()}:{free_port()}"

    def init_group(self, init_method: str, backend: str) -> int:
        import torch.distributed as dist

        if self.world > 1:
            dist.init_process_group(backend, init_method=init_method, rank=self.rank, world_size=self.world)
        self.trainer = self._make_learner(*self._learner_args)
        self._learner_args = None  # the learner holds the model (sharded: its shard only)
        return self.rank

    def backprop(self, step: int, norm: Norm, store: Any) -> TrainReport:
        """Backprop this rank's deliveries until the store has none left (no optimizer step)."""
        import ray

        rep = TrainReport(rank=self.rank)
        totals = Totals()
        held: list = []  # sharded: every delivery first, then one backprop call (`Policy.lockstep`)
        while True:
            t0 = time.perf_counter()
            got = ray.get(store.next.remote(self.rank))
            if got is None:
                rep.queue_wait_s += time.perf_counter() - t0
                break
            delivery, members = got
            groups = ray.get([ref for ref, _, _ in members])
            # the driver scored the samples: its advantages, not the store's placeholders
            samples = [
                dataclasses.replace(group[i], advantage=adv)
                for group, (_, idx, advs) in zip(groups, members)
                for i, adv in zip(idx, advs)
            ]
            t1 = time.perf_counter()
            rep.queue_wait_s += t1 - t0
            rep.deliveries.append(delivery)
            if self.sharded:
                held += samples
                continue
            totals.add(self.trainer.backprop(samples, norm), len(samples))
            rep.backprop_s += time.perf_counter() - t1
        if self.sharded:  # also with no delivery: the other ranks' passes need this one's
            t1 = time.perf_counter()
            totals.add(self.trainer.backprop(held, norm), len(held))
            rep.backprop_s += time.perf_counter() - t1
        rep.totals = totals.result()
        return rep

    def optimizer_step(self, nonfinite: bool) -> dict[str, Any]:
        """All-reduce the gradients (ONE call; sharded: FSDP reduced them in backward, only the
        non-finite flag is shared), then the optimizer step every rank takes alike."""
        t0 = time.perf_counter()
        if self.sharded:
            nonfinite = any_rank(nonfinite, self.trainer.device)
        else:
            nonfinite = allreduce_grads(self.trainer.policy, nonfinite, self.world)
        allreduce_s = time.perf_counter() - t0
        return {**self.trainer.optimizer_step(nonfinite=nonfinite), "allreduce_s": allreduce_s}

    def lr(self) -> float:
        """The learning rate of the next optimizer step."""
        return self.trainer.lr()

    def publish(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """`(weights, trainer state)`, both as numpy arrays: what samplers load and what a
        replaced trainer restarts from; returned into the object store once (rank 0).
        Sharded, every rank calls it (the whole state is gathered, in the replicated
        layout); the others return `(None, None)`."""
        policy = self.trainer.policy
        keep = self.rank == 0  # sharded: the others take part in the gathers and keep nothing
        weights, state = policy.state_dict(keep=keep), self.trainer.state_dict()
        if policy.sharded:
            state = policy.gather(state, keep)
        if not keep:
            return None, None
        return weights_to_numpy(weights), state_to_numpy(state)

    def restore(self, weights: Mapping[str, Any], state: dict[str, Any]) -> int:
        """Take the state `publish` gave (gradients dropped); sharded, each rank keeps its shard."""
        policy = self.trainer.policy
        policy.load_state_dict(weights_from_numpy(weights))
        self.trainer.load_state_dict(state_from_numpy(state))
        if policy.sharded:
            policy.shard_optimizer_state(self.trainer.optimizer)
        self.trainer.optimizer.zero_grad(set_to_none=True)
        return self.rank

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def any_rank(flag: bool, device: Any) -> bool:
    """Whether `flag` holds on any trainer (one all-reduce of one number, on `device`: nccl needs a GPU tensor)."""
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0] > 0)


def allreduce_grads(model: Any, nonfinite: bool, world: int) -> bool:
    """Sum the gradients of `model.parameters()` (a Policy's: the trained ones) over all
    trainers in ONE all-reduce; returns whether any rank saw a non-finite loss. A parameter
    without a gradient on every rank keeps `grad = None`, as in the single process (AdamW
    would otherwise move it by its momentum)."""
    if world == 1:
        return nonfinite
    import torch.distributed as dist

    params = list(model.parameters())
    dev = params[0].device
    parts = [p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=dev) for p in params]
    flags = torch.tensor([float(p.grad is not None) for p in params] + [float(nonfinite)], device=dev)
    flat = torch.cat(parts + [flags])  # [sum of numel + params + 1]
    dist.all_reduce(flat)
    offset = 0
    for p, has in zip(params, flat[-len(params) - 1 : -1].tolist()):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone() if has > 0 else None
        offset += n
    return bool(flat[-1] > 0)
