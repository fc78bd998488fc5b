"""The learner: what turns a step's kept samples into an optimizer step, and hands the new
weights to the samplers.

`Learner` holds the policy (`dashrl.policy.Policy`), the optimizer, the LR schedule and the
loss; `backprop` cuts the samples into micro-batches (`micro_batches`, `join_passes`),
collates each into tensors (`collate`), runs the logprob pass (`dashrl.train.logprobs`) and
the loss (`dashrl.algo`), and accumulates gradients; `optimizer_step` clips and steps;
`sync` gives the new weights to the samplers it was handed (the one-process
`dashrl.rollout.samples.LocalSource`'s host). It implements the `Learner` protocol of
`dashrl.train.schedules`, as the Ray backend's `RayLearner` does, whose trainer actors each
wrap one of these (without samplers). All sampling results live in CPU memory as `Sample`
records until a micro-batch asks for them.
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
from dashrl.algo.registry import get as get_algorithm
from dashrl.config import Config
from dashrl.policy import Policy, make_policy
from dashrl.rollout.samples import Sample, pack_groups
from dashrl.runtime.flops import pass_flops, shape_of
from dashrl.totals import Totals
from dashrl.train.logprobs import (
    Collated,
    completion_logprobs,
    packable,
    packed_logprobs,
    shared_prompt_logprobs,
)
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

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, optimizer_steps: int):
        deterministic_kernels(cfg.train.deterministic)
        if cfg.train.keep_memory:
            from dashrl.runtime.memory import keep_freed_memory

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
        supervised = get_algorithm(a.name).supervised  # cross-entropy of the model itself: temperature 1
        self.temperature = 1.0 if supervised else cfg.sampler.temperature or 1.0
        self.forward_samples = 0  # samples that went through a training forward pass
        self.samplers: list[Any] = []  # the sampler hosts `sync` loads (one process: its source's)

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
        step_cast = self.policy.autocast() if cfg.train.cast_once else contextlib.nullcontext()
        with step_cast:
            totals, (trained_tokens, distinct_tokens, flops), nonfinite = self._backprop(samples, norm, model)
        counts = {
            "time/backprop_s": time.perf_counter() - t0,
            "train/tokens": trained_tokens,
            "train/distinct_tokens": distinct_tokens,
            **({"train/flops": flops} if flops else {}),  # dashrl.runtime.flops: what backprop MFU is read from
            "train/samples": len(samples),
            "nonfinite": float(nonfinite),
        }
        totals.add(counts, 0, summed=counts)  # counts and times add up over calls and ranks
        return totals.result()

    def _backprop(self, samples: Sequence[Sample], norm: Norm, model: Any) -> tuple[Totals, tuple[int, int, int], bool]:
        cfg = self.cfg
        totals = Totals()
        trained_tokens, distinct_tokens, flops, nonfinite = 0, 0, 0, False
        shape = shape_of(getattr(model, "config", None))
        batches = micro_batches(samples, cfg.train.micro_batch_by, cfg.train.micro_batch_size, cfg.train.token_budget)
        if self.pass_tokens > 1:
            batches = join_passes(batches, samples, self.pass_tokens)
        batches += [[]] * self.policy.lockstep(len(batches))  # sharded: empty ones, as many as other ranks have more
        for idx in batches:
            mb = collate([samples[i] for i in idx] or [self._empty], self.pad_id, self.device)
            ref_logprobs = None
            with self.policy.autocast():
                if self.kl_term is not None:
                    with torch.no_grad(), self.policy.reference() as ref:
                        ref_logprobs = self._logprobs(ref, mb, self.temperature)
                logprobs = self._logprobs(model, mb, self.temperature)  # [N, T]
                inputs = LossInputs(logprobs, mb.old_logprobs, mb.advantages, mb.loss_mask, norm)
                out = LossOutput.of(self.loss_fn(inputs))
                loss, metrics, summed = out.loss, out.metrics, out.summed
                if self.kl_term is not None:  # the one place the KL term joins the loss
                    kl = self.kl_term(inputs, ref_logprobs)
                    loss, metrics, summed = loss + kl.loss, {**metrics, **kl.metrics}, summed | kl.summed
            self.forward_samples += len(idx)
            trained_tokens += mb.num_tokens if idx else 0
            distinct_tokens += mb.distinct_tokens if idx else 0
            if idx and shape is not None:  # the pass, and the reference model's forward where a KL term runs
                flops += pass_flops(shape, mb.groups) + (
                    pass_flops(shape, mb.groups, False) if ref_logprobs is not None else 0
                )
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
        return totals, (trained_tokens, distinct_tokens, flops), nonfinite

    @property
    def _empty(self) -> Sample:
        """A micro-batch's stand-in with no completion tokens: a pass whose gradient is 0."""
        return Sample([self.pad_id], [], [], 0.0, 0.0, -1, "pad")

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

    def sync(self) -> float:
        """Hand the new weights to the samplers (one transfer each); returns seconds."""
        t0 = time.perf_counter()
        if self.samplers:
            weights = self.policy.sampler_weights()
            for host in self.samplers:
                host.load_weights(weights, self.version)
        return time.perf_counter() - t0

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


# -- micro-batches ----------------------------------------------------------------------------
def micro_batches(samples: Sequence[Sample], by: str, size: int, token_budget: int = 4096) -> list[list[int]]:
    """Cut sample indices into micro-batches; every index appears exactly once.

    - `samples`: at most `size` samples each, sorted by length so padding is small.
    - `groups`: whole groups together (`dashrl.rollout.samples.pack_groups`); a group larger
      than `size` alone, cut into micro-batches of `size`.
    - `tokens`: sorted by length, as many as fit `token_budget` padded tokens (at least one).

    >>> s = [Sample([1], [2] * n, [0.0] * n, 0.0, 1.0, n // 2, "stop") for n in (1, 5, 2, 4)]
    >>> micro_batches(s, "samples", 2)
    [[1, 3], [2, 0]]
    """
    if by == "groups":
        members: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            members.setdefault(s.group, []).append(i)
        out: list[list[int]] = []
        for pack in pack_groups([(g, len(m)) for g, m in members.items()], size):
            flat = [i for g in pack for i in members[g]]
            out += [
                flat[j : j + size] for j in range(0, len(flat), size)
            ]  # only a lone group larger than `size` is cut
        return out
    ranked = sorted(range(len(samples)), key=lambda i: -samples[i].length)
    if by == "samples":
        return [ranked[i : i + size] for i in range(0, len(ranked), size)]
    if by == "tokens":
        out, current, width = [], [], 0
        for i in ranked:
            w = max(width, samples[i].length)
            if current and w * (len(current) + 1) > token_budget:
                out.append(current)
                current, w = [], samples[i].length
            current.append(i)
            width = w
        return out + ([current] if current else [])
    raise ValueError(f"unknown micro-batch mode {by!r}; valid: ['groups', 'samples', 'tokens']")


PASS_BYTES = 2 * 2**30  # activations one packed pass may hold, when train.pass_tokens is 0 (auto)


def auto_pass_tokens(model_config: Any, budget_bytes: int = PASS_BYTES) -> int:
    """Tokens per packed pass for `budget_bytes` of activations, from the model's shape.

    A decoder layer keeps about 20 bytes per hidden unit and 10 per MLP unit for each token
    until backward (bf16 autocast; measured on SmolLM2-135M: 0.85 MB a token over 30 layers).
    Clamped to 256 .. 4096: fewer starves the products, more gains nothing measurable on CPU.

    >>> from types import SimpleNamespace as C
    >>> auto_pass_tokens(C(num_hidden_layers=30, hidden_size=576, intermediate_size=1536))  # SmolLM2-135M
    2663
    >>> auto_pass_tokens(C(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008))  # a 7B
    349
    """
    layers = getattr(model_config, "num_hidden_layers", None) or 24
    hidden = getattr(model_config, "hidden_size", None) or 1024
    inter = getattr(model_config, "intermediate_size", None) or 4 * hidden
    per_token = layers * (20 * hidden + 10 * inter)
    return max(256, min(4096, budget_bytes // per_token))


def pass_tokens(samples: Sequence[Sample]) -> int:
    """Tokens a packed pass over `samples` computes: each group's prompt once, every completion but its last token.

    >>> s = [Sample([1, 2], [3, 4, 5], [0.0] * 3, 0.0, 1.0, 0, "stop")] * 2
    >>> pass_tokens(s)
    6
    """
    prompts = {(s.group, tuple(s.prompt_ids)): len(s.prompt_ids) for s in samples}
    return sum(prompts.values()) + sum(max(len(s.completion_ids) - 1, 0) for s in samples)


def join_passes(batches: list[list[int]], samples: Sequence[Sample], budget: int) -> list[list[int]]:
    """Consecutive micro-batches joined into one packed pass while the pass computes at most `budget`
    tokens (`pass_tokens`); a micro-batch over the budget alone stays a pass of its own.

    The loss of a pass is the sum of its micro-batches' losses (every loss is normalised by the
    whole step's denominators), so joining changes the gradient only by summation order, while
    short completions get products large enough to use the machine (docs/performance-short.md).

    >>> s = [Sample([1] * 10, [2] * 11, [0.0] * 11, 0.0, 1.0, g, "stop") for g in range(4)]
    >>> join_passes([[0], [1], [2], [3]], s, 40)
    [[0, 1], [2, 3]]
    >>> join_passes([[0], [1], [2], [3]], s, 10)
    [[0], [1], [2], [3]]
    """
    out: list[list[int]] = []
    size = 0
    for idx in batches:
        n = pass_tokens([samples[i] for i in idx])
        if out and size + n <= budget:
            out[-1] = out[-1] + idx
            size += n
        else:
            out.append(list(idx))
            size = n
    return out


def collate(samples: Sequence[Sample], pad_id: int, device: torch.device | str = "cpu") -> Collated:
    """Pack samples into padded tensors (completion tokens start at column P for every row). The loss
    mask is 1 on the completion tokens a sample trains on: all of them, or its `mask`'s (multi-turn)."""
    N = len(samples)
    P = max(len(s.prompt_ids) for s in samples)
    T = max(max(len(s.completion_ids) for s in samples), 1)
    ids = torch.full((N, P + T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, P + T), dtype=torch.long)
    old = torch.zeros((N, T))
    for i, s in enumerate(samples):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        ids[i, P - p : P] = torch.as_tensor(s.prompt_ids)
        attn[i, P - p : P] = 1
        if c:
            ids[i, P : P + c] = torch.as_tensor(s.completion_ids)
            attn[i, P : P + c] = 1
            old[i, :c] = torch.as_tensor(s.logprobs)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    loss_mask = attn[:, P:].float()  # [N, T]
    for i, s in enumerate(samples):
        if s.mask is not None:  # a multi-turn trajectory: an environment's tokens are context, not trained on
            loss_mask[i, : len(s.mask)] = torch.as_tensor(s.mask, dtype=torch.float32)
    first: dict[tuple[int, tuple[int, ...]], int] = {}
    prompt_rows = [first.setdefault((s.group, tuple(s.prompt_ids)), i) for i, s in enumerate(samples)]
    return Collated(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=pos.to(device),
        completion_ids=ids[:, P:].to(device),
        loss_mask=loss_mask.to(device),
        old_logprobs=old.to(device),
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32, device=device),
        prompt_len=P,
        prompt_rows=torch.tensor(prompt_rows, dtype=torch.long, device=device),
    )
