"""The pieces every update schedule is built from: rollout, backprop, optimizer step, sync.

The schedules in `dashrl.train.schedules` talk to two interfaces (`RolloutSource`,
`Learner` in `dashrl.train.schedules`). `Learner` here holds the policy
(`dashrl.policy.Policy`), the optimizer, backprop and their state, and no sampler;
`LocalSource` holds the sampler and the task. In one process `Trainer` is a `Learner`
with its `LocalSource`, both interfaces in one object. On Ray (`dashrl.distributed.backend`)
the source is the sampler actors and the learner a group of trainer actors, each
wrapping a `Learner`; the local source and the sampler actors sample and score through
one function (`dashrl.rollout.samples.sample_and_score`). All sampling results live in
CPU memory as `Sample` records until a micro-batch asks for them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from typing import Any, Sequence

import torch

from dashrl.algo import KLTerm, LossInputs, LossOutput, Norm, make_loss
from dashrl.algo.advantages import advantages_of
from dashrl.algo.registry import get as get_algorithm
from dashrl.config import Config
from dashrl.data import Example
from dashrl.data.prompts import build_prompt
from dashrl.data.tasks import Task, make_task
from dashrl.models import autocast_ctx
from dashrl.policy import Policy, make_policy
from dashrl.rollout import SamplingParams, make_sampler
from dashrl.rollout.samples import Rollouts, Sample, sample_and_score, sample_seed
from dashrl.train.batching import auto_pass_tokens, collate, join_passes, micro_batches
from dashrl.totals import Totals
from dashrl.train.logprobs import completion_logprobs, packable, packed_logprobs, shared_prompt_logprobs
from dashrl.train.optim import make_optimizer


def lr_lambda(step: int, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based): linear warmup, then decay.

    >>> [round(lr_lambda(s, 2, 6, "linear"), 2) for s in range(6)]
    [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress  # linear


def deterministic_kernels(on: bool) -> None:
    """Make torch pick deterministic kernels (process-wide), or the fastest ones.

    On CPU the default accumulating `index_put` (the backward of indexing a group's prompt
    keys/values out to its G rows) gives results that depend on the addresses of its tensors:
    two runs of one config, or one run and its resume, then differ in the last bits of a
    gradient from step 2 on. The deterministic kernel costs nothing measurable here.
    Uninitialised memory is left as it is (torch's default in deterministic mode fills it).
    """
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    torch.use_deterministic_algorithms(on, warn_only=True)
    # In deterministic mode torch also fills every new uninitialised tensor (torch.empty) with NaN,
    # so that a kernel reading memory it never wrote is caught. No kernel here does (every output
    # is written in full), and the fills cost ~19% of the quickstart's backprop (profile in
    # docs/performance-short.md: five [vocab, hidden] fills per packed pass, and thousands of small ones).
    torch.utils.deterministic.fill_uninitialized_memory = False


class Learner:
    """Policy, optimizer and LR schedule of one run, and backprop and the optimizer step on them.

    `model` is the raw transformers model (`lora.r > 0` wraps it with adapters in place).
    """

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, optimizer_steps: int, task: Task | None = None):
        deterministic_kernels(cfg.train.deterministic)
        if cfg.train.keep_memory:
            from dashrl.train.warmup import keep_freed_memory

            keep_freed_memory()  # process-wide, before the first large buffers
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.policy: Policy = make_policy(
            cfg, model, shard=cfg.dist.shard == "full"
        )  # sharded: built in a trainer actor
        self.model = self.policy.module  # what trains (the peft wrapper with LoRA)
        if cfg.model.gradient_checkpointing:
            self.policy.model.gradient_checkpointing_enable()
            if self.policy.lora:  # frozen embeddings: the checkpointed blocks need an input that requires grad
                self.policy.model.enable_input_require_grads()
        self.optimizer = make_optimizer(
            self.policy.parameters(), cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_lambda(s, cfg.train.warmup_steps, optimizer_steps, cfg.train.lr_schedule),
        )
        a = cfg.algo
        self.loss_fn = make_loss(a.loss, **a.hparams)  # the algo fields its constructor names
        self.kl_term = KLTerm(a.beta, a.kl_estimator, a.aggregation) if a.beta > 0 else None
        # Activation checkpointing drops the KV cache the shared prompt pass hands on, and recomputes
        # the packed pass after its attention function is switched back: use the plain pass.
        gc = cfg.model.gradient_checkpointing
        # Sharded, each decoder pass is collective: the shared prompt pass makes one or two, as the batch has it.
        shared = cfg.train.share_prompts and not gc and not self.policy.sharded
        packed = cfg.train.packed and not gc and packable(self.policy.model)
        fn = packed_logprobs if packed else shared_prompt_logprobs if shared else completion_logprobs
        self._logprobs = functools.partial(fn, chunk=cfg.train.head_chunk)
        # Packed: micro-batches joined into passes of up to this many tokens (0: one pass each).
        self.pass_tokens = (cfg.train.pass_tokens or auto_pass_tokens(self.policy.model.config)) if packed else 0
        self.logprob_pass = (
            f"{fn.__name__}, head_chunk {cfg.train.head_chunk}"  # which pass backprop runs (bench, tests)
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.forward_samples = 0  # samples that went through a training forward pass

    # -- backprop -------------------------------------------------------------------
    def backprop(self, samples: Sequence[Sample], norm: Norm) -> dict[str, float]:
        """Forward/backward over micro-batches, accumulating gradients (no optimizer step).

        `norm` holds the denominators of the whole optimizer batch, so the micro-batch
        losses add up to the loss of that batch whatever the split.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        model = self.policy.model
        self.model.train()
        # One autocast region for the whole step: autocast keeps its bf16 casts of the weights
        # until the region closes, so each weight is cast once per step, not once per micro-batch.
        step_cast = autocast_ctx(model, cfg.model.dtype) if cfg.train.cast_once else contextlib.nullcontext()
        with step_cast:
            totals, (trained_tokens, distinct_tokens), nonfinite = self._backprop(samples, norm, model)
        counts = {
            "time/backprop_s": time.perf_counter() - t0,
            "train/tokens": trained_tokens,
            "train/distinct_tokens": distinct_tokens,
            "train/samples": len(samples),
            "nonfinite": float(nonfinite),
        }
        totals.add(counts, 0, summed=counts)  # counts and times add up over calls and ranks
        return totals.result()

    def _backprop(self, samples: Sequence[Sample], norm: Norm, model: Any) -> tuple[Totals, tuple[int, int], bool]:
        cfg = self.cfg
        totals = Totals()
        trained_tokens, distinct_tokens, nonfinite = 0, 0, False
        batches = micro_batches(samples, cfg.train.micro_batch_by, cfg.train.micro_batch_size, cfg.train.token_budget)
        if self.pass_tokens > 1:
            batches = join_passes(batches, samples, self.pass_tokens)
        batches += [[]] * self.policy.lockstep(len(batches))  # sharded: empty ones, as many as other ranks have more
        for idx in batches:
            mb = collate([samples[i] for i in idx] or [self._empty], self.pad_id, self.device)
            ref_logprobs = None
            with autocast_ctx(model, cfg.model.dtype):
                if self.kl_term is not None:
                    with torch.no_grad(), self.policy.reference() as ref:
                        ref_logprobs = self._logprobs(ref, mb, self._temperature)
                logprobs = self._logprobs(model, mb, self._temperature)  # [N, T]
                inputs = LossInputs(logprobs, mb.old_logprobs, mb.advantages, mb.loss_mask, norm)
                out = LossOutput.of(self.loss_fn(inputs))
                loss, metrics, summed = out.loss, out.metrics, out.summed
                if self.kl_term is not None:  # the one place the KL term joins the loss
                    kl = self.kl_term(inputs, ref_logprobs)
                    loss, metrics, summed = loss + kl.loss, {**metrics, **kl.metrics}, summed | kl.summed
            self.forward_samples += len(idx)
            trained_tokens += mb.num_tokens if idx else 0
            distinct_tokens += mb.distinct_tokens if idx else 0
            if not torch.isfinite(loss):
                nonfinite = True
                if self.policy.sharded:  # every rank backprops alike (collectives); the step is skipped
                    with torch.autocast(self.device.type, enabled=False):
                        loss.backward()
                continue
            with torch.autocast(
                self.device.type, enabled=False
            ):  # backward as outside autocast; keeps the step's casts
                loss.backward()
            if idx:
                totals.add({"loss": float(loss.detach()), **metrics}, len(idx), summed={"loss", *summed})
        return totals, (trained_tokens, distinct_tokens), nonfinite

    @property
    def _empty(self) -> Sample:
        """A micro-batch's stand-in with no completion tokens: a pass whose gradient is 0."""
        return Sample([self.pad_id], [], [], 0.0, 0.0, -1, "pad")

    @property
    def _temperature(self) -> float:
        if get_algorithm(self.cfg.algo.name).supervised:  # cross-entropy of the model itself
            return 1.0
        return self.cfg.sampler.temperature or 1.0

    @property
    def version(self) -> int:
        """Optimizer steps taken so far (the policy version a sample records)."""
        return int(self.scheduler.last_epoch)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    # -- optimizer ----------------------------------------------------------------------
    def optimizer_step(self, nonfinite: bool) -> dict[str, Any]:
        """Clip, step, schedule; skipped (gradients dropped) when the loss or norm is not finite."""
        t0 = time.perf_counter()
        params = [p for p in self.policy.parameters() if p.grad is not None]
        max_norm = self.cfg.train.max_grad_norm if self.cfg.train.max_grad_norm > 0 else float("inf")
        grad_norm = self.policy.clip_grad_norm(params, max_norm) if params else 0.0
        out: dict[str, Any] = {"grad_norm": grad_norm, "lr": self.scheduler.get_last_lr()[0]}
        if nonfinite or not math.isfinite(grad_norm):
            out["skipped"] = "nonfinite_loss" if nonfinite else "nonfinite_grad"
        elif not params:
            out["skipped"] = "no_gradient"
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        out["time/optimizer_s"] = time.perf_counter() - t0
        return out

    # -- checkpoint state (weights are saved and loaded separately) ----------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resume needs besides the weights: optimizer, LR schedule and counters."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "forward_samples": self.forward_samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; load the weights first."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.forward_samples = int(state["forward_samples"])


class LocalSource:
    """The rollout source of one process: a sampler on the policy's sampling weights, and the task."""

    def __init__(self, cfg: Config, policy: Policy, tokenizer: Any, task: Task):
        self.cfg, self.tokenizer, self.task = cfg, tokenizer, task
        self.sampler = make_sampler(
            cfg.sampler.backend, model=policy.sampler_model(), tokenizer=tokenizer, dtype=cfg.model.dtype
        )
        s = cfg.sampler
        self.params = SamplingParams(
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            batch_size=s.batch_size,
        )
        self._prompt_cache: dict[str, list[int]] = {}
        self.generate_calls = 0  # sampler.generate calls so far

    def prompt_ids(self, ex: Example) -> list[int]:
        if ex.id not in self._prompt_cache:
            self._prompt_cache[ex.id] = build_prompt(self.tokenizer, ex)
        return self._prompt_cache[ex.id]

    def rollout(self, examples: Sequence[Example], seed: int, first_group: int = 0, version: int = 0) -> Rollouts:
        """Sample G completions for each example in ONE generate call, score, compute advantages."""
        a = self.cfg.algo
        ro = sample_and_score(self.sampler, self.prompt_ids, self.task.grade, examples, a.group_size, self.params, seed,
                              first_group=first_group, advantages=advantages_of(self.cfg), version=version)  # fmt: skip
        self.generate_calls += 1
        return ro

    def load_weights(self, policy: Policy) -> float:
        """Give the sampler the policy's current weights (one transfer); returns seconds."""
        t0 = time.perf_counter()
        self.sampler.load_weights(policy.sampler_weights())
        return time.perf_counter() - t0


class Trainer(Learner):
    """One process: a `Learner` and its `LocalSource`, the `Learner` and `RolloutSource` in one object."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, optimizer_steps: int, task: Task | None = None):
        super().__init__(cfg, model, tokenizer, optimizer_steps)
        self.source = LocalSource(
            cfg,
            self.policy,
            tokenizer,
            task if task is not None else make_task(cfg.task, cfg.train.seed, reward=cfg.reward),
        )

    @property
    def task(self) -> Task:
        return self.source.task

    @property
    def sampler(self) -> Any:
        return self.source.sampler

    @property
    def generate_calls(self) -> int:
        return self.source.generate_calls

    def prompt_ids(self, ex: Example) -> list[int]:
        return self.source.prompt_ids(ex)

    def rollout(self, examples: Sequence[Example], seed: int, first_group: int = 0) -> Rollouts:
        """Sample G completions for each example in ONE generate call, score, compute advantages."""
        return self.source.rollout(examples, seed, first_group, self.version)

    def ahead(self, step: int) -> None:
        """One process samples each step when it comes (no overlap)."""

    def eval_sampler(self) -> Any:
        """A sampler holding the current weights, for in-training evaluation."""
        return self.source.sampler

    def sync(self) -> float:
        """Send the new weights to the sampler (one transfer); returns seconds."""
        return self.source.load_weights(self.policy)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generate_calls": self.source.generate_calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; load the weights first, then call `sync()`."""
        super().load_state_dict(state)
        self.source.generate_calls = int(state.get("generate_calls", 0))


__all__ = [
    "Learner",
    "LocalSource",
    "Trainer",
    "lr_lambda",
    "sample_seed",
]  # sample_seed lives in dashrl.rollout.samples
