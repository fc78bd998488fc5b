"""The three Ray actors of a distributed run, as plain classes (`ray.remote` wraps them in
`dashrl.dist.driver`, so importing this module needs no Ray).

- `SamplerWorker`: its own copy of the policy and a sampler backend; samples, scores and
  filters whole units (see `dashrl.dist.units`); reloads weights once per step.
- `RolloutStore` (in `dashrl.dist.store`): the queue trainers fetch deliveries from.
- `TrainerWorker`: a `Trainer` that backprops what it fetches from the store, then
  all-reduces gradients with torch.distributed and takes the optimizer step; every
  trainer steps on the same summed gradient, so all hold the same weights.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Mapping

import torch

from dashrl.algo import Norm
from dashrl.config import Config
from dashrl.dist.units import TrainReport, Unit, add_totals, finish_totals, sample_unit
from dashrl.rollout import SamplingParams


def _place(model: Any, gpus: float, cpus: float) -> Any:
    torch.set_num_threads(max(1, int(cpus)))
    return model.to("cuda") if gpus > 0 else model


def sampling_params(cfg: Config) -> SamplingParams:
    s = cfg.sampler
    return SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, batch_size=s.batch_size)


class SamplerWorker:
    """One inference worker: policy copy + sampler backend."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, task: Any, index: int):
        from dashrl.data.prompts import build_prompt
        from dashrl.rollout import make_sampler

        self.cfg, self.task, self.index = cfg, task, index
        self.model = _place(model, cfg.dist.gpus_per_sampler, cfg.dist.cpus_per_sampler).requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.sampler = make_sampler(cfg.sampler.backend, model=self.model, tokenizer=tokenizer, dtype=cfg.model.dtype)
        self.params = sampling_params(cfg)
        self._prompts: dict[str, list[int]] = {}
        self._build_prompt = build_prompt

    def ready(self) -> int:
        return self.index

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> float:
        """Load the step's weights (one object fetched from the store); returns seconds."""
        t0 = time.perf_counter()
        if getattr(self.sampler, "model", None) is self.model:  # the backend decodes with our copy itself
            self.model.load_state_dict(state, strict=True)
        else:
            self.sampler.load_weights(state)
        return time.perf_counter() - t0

    def _prompt_ids(self, ex: Any) -> list[int]:
        if ex.id not in self._prompts:
            self._prompts[ex.id] = self._build_prompt(self.tokenizer, ex)
        return self._prompts[ex.id]

    def sample(self, unit: Unit, examples: list, seed: int) -> tuple:
        """Returns `(UnitResult, kept samples of group 0, of group 1, ...)`: one object each."""
        a = self.cfg.algo
        report, groups = sample_unit(
            self.sampler, self._prompt_ids, self.task.score, examples, unit, a.group_size, self.params, seed,
            a.filter_threshold, a.scale_advantages,
        )
        report.worker = self.index
        return (report, *groups)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class TrainerWorker:
    """One data-parallel backprop worker."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, task: Any, optimizer_steps: int, rank: int, world: int):
        from dashrl.train.trainer import Trainer

        self.rank, self.world = rank, world
        model = _place(model, cfg.dist.gpus_per_trainer, cfg.dist.cpus_per_trainer)
        self.trainer = Trainer(cfg, model, tokenizer, optimizer_steps, task=task)

    def rendezvous(self) -> str:
        """`tcp://IP:PORT` of a free port on this node, for torch.distributed's TCP store."""
        import ray

        return f"tcp://{ray.util.get_node_ip_address()}:{free_port()}"

    def init_group(self, init_method: str, backend: str) -> int:
        import torch.distributed as dist

        if self.world > 1:
            dist.init_process_group(backend, init_method=init_method, rank=self.rank, world_size=self.world)
        return self.rank

    def train_step(self, step: int, norm: Norm, store: Any) -> tuple[TrainReport, dict | None]:
        """Backprop deliveries until the store is empty, all-reduce, optimizer step.

        Returns `(report, state dict)`; only rank 0 returns the state dict, which lands
        in the object store once and is what every sampler loads.
        """
        import ray

        rep = TrainReport(rank=self.rank)
        acc: dict[str, float] = {}
        total = 0
        while True:
            t0 = time.perf_counter()
            got = ray.get(store.next.remote(self.rank))
            if got is None:
                rep.queue_wait_s += time.perf_counter() - t0
                break
            delivery, refs = got
            samples = [s for group in ray.get(refs) for s in group]
            t1 = time.perf_counter()
            rep.queue_wait_s += t1 - t0
            add_totals(acc, self.trainer.backprop(samples, norm), len(samples))
            total += len(samples)
            rep.backprop_s += time.perf_counter() - t1
            rep.deliveries.append(delivery)
        rep.totals = finish_totals(acc, total)
        t2 = time.perf_counter()
        nonfinite = allreduce_grads(self.trainer.model, bool(rep.totals.get("nonfinite", 0.0)), self.world)
        rep.allreduce_s = time.perf_counter() - t2
        rep.opt = self.trainer.optimizer_step(nonfinite=nonfinite)
        state = None
        if self.rank == 0:
            state = {k: v.detach().to("cpu") for k, v in self.trainer.model.state_dict().items()}
        return rep, state

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def allreduce_grads(model: Any, nonfinite: bool, world: int) -> bool:
    """Sum gradients over all trainers in ONE all-reduce; returns whether any rank saw a
    non-finite loss. A parameter without a gradient on every rank keeps `grad = None`, as
    in the single process (AdamW would otherwise move it by its momentum)."""
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
