"""TRL's `GRPOTrainer` as a peer in `dashrl bench`, driven one optimizer step at a time.

TRL's `Trainer.train()` owns its loop, so it runs in a worker thread that a callback parks at
the end of every optimizer step; `TRLPeer.step()` lets it run exactly one more step. Only one
thread computes at any moment, so TRL interleaves with dashrl's variants like any other.

Same workload as the dashrl variants: the same initial weights (fp32 master weights, bf16
autocast when `model.dtype = bf16`, as dashrl's backprop), the same rendered prompts in the
same order (the dataset is the task's problems of step 0, 1, ... with TRL's shuffling off),
the same reward function, G, M, max new tokens, temperature, top-p/top-k, learning rate,
warm-up, schedule, weight decay, gradient clip and micro-batch size, and no gradient
checkpointing (TRL turns it on by default; off is faster at this size). TRL's own defaults
stay where a TRL user would keep them: `loss_type="dapo"` (token-level mean, like dashrl's
default), one iteration per generation. `beta` is the config's (`--algo.beta 0.04` gives every arm
of a bench, TRL's included, the same KL term; 0, no reference model, unless set).

`generation_batch_size` is TRL's knob for preemptive sampling: candidates are the multiples
of the micro-batch that divide M x G (one generation per optimizer step at most, so every
sample stays on-policy as in DASH); `probe_generation_batch_size` times TRL's own generate
on each and keeps the fastest per sample.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any, Callable

Row = dict[str, Any]


def trl_available() -> bool:
    """True when the optional `trl` package (`pip install dashrl[bench]`) imports."""
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def generation_batch_candidates(samples_per_step: int, micro_batch: int, group_size: int) -> list[int]:
    """Generation batch sizes TRL accepts that hold whole groups and stay within one step.

    >>> generation_batch_candidates(64, 8, 8)
    [8, 16, 32, 64]
    >>> generation_batch_candidates(32, 4, 8)
    [8, 16, 32]
    """
    return [
        g
        for g in range(micro_batch, samples_per_step + 1, micro_batch)
        if samples_per_step % g == 0 and g % group_size == 0
    ]


def _timed(
    fn: Callable[..., Any], totals: dict[str, float], key: str, after: Callable[[Any], None] | None = None
) -> Callable[..., Any]:
    """Wrap a bound method so its wall time adds into `totals[key]` (and `after` sees its result)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        totals[key] += time.perf_counter() - t0
        if after is not None:
            after(out)
        return out

    return wrapper


class TRLPeer:
    """One TRL GRPOTrainer run over the bench workload, stepped from the bench loop.

    >>> peer = TRLPeer(cfg, model, tok, steps=3, generation_batch_size=64, out_dir="/tmp/x")  # doctest: +SKIP
    >>> row = peer.step()  # one optimizer step; keys as dashrl's metrics rows  # doctest: +SKIP
    """

    def __init__(self, cfg: Any, model: Any, tokenizer: Any, steps: int, generation_batch_size: int, out_dir: str):
        self.steps = steps
        self.trainer, self._rewards = build_trainer(cfg, model, tokenizer, steps, generation_batch_size, out_dir)
        self._totals: dict[str, float] = {}
        self._reset()
        self._instrument()
        self._go = threading.Event()
        self._done = threading.Event()
        self._stop = False
        self._error: BaseException | None = None
        self._row: Row | None = None
        self._t_go = 0.0
        self._thread: threading.Thread | None = None

    # -- instrumentation ----------------------------------------------------------
    def _reset(self) -> None:
        self._totals.update(
            {k: 0.0 for k in ("prepare", "generate", "score", "train_step", "optimizer", "tokens", "sampled")}
        )
        self._rewards.clear()

    def _instrument(self) -> None:
        tr, tot = self.trainer, self._totals

        def count_sampled(out: Any) -> None:  # _generate returns (prompt_ids, completion_ids, ...)
            tot["sampled"] += sum(len(c) for c in out[1])

        tr._generate = _timed(tr._generate, tot, "generate", count_sampled)
        tr._calculate_rewards = _timed(tr._calculate_rewards, tot, "score")
        tr._prepare_inputs = _timed(tr._prepare_inputs, tot, "prepare")  # generation + scoring + advantages
        tr.training_step = _timed(tr.training_step, tot, "train_step")  # _prepare_inputs + forward/backward
        inner_loss = tr.compute_loss

        def compute_loss(model: Any, inputs: dict[str, Any], *a: Any, **kw: Any) -> Any:
            tot["tokens"] += float(inputs["prompt_mask"].sum() + inputs["completion_mask"].sum())
            return inner_loss(model, inputs, *a, **kw)

        tr.compute_loss = compute_loss
        tr.add_callback(_gate(self))

    def _make_row(self) -> Row:
        t = self._totals
        return {
            "reward/mean": sum(self._rewards) / len(self._rewards) if self._rewards else None,
            "filter/kept_frac": 1.0,
            "gen/sampled_tokens": int(t["sampled"]),
            "train/tokens": int(t["tokens"]),
            "time/sampling_s": t["generate"],
            "time/scoring_s": t["score"],
            "time/other_s": t["prepare"] - t["generate"] - t["score"],
            "time/backprop_s": t["train_step"] - t["prepare"],
            "time/optimizer_s": t["optimizer"],
            "time/sync_s": 0.0,
            "time/step_s": time.perf_counter() - self._t_go,
        }

    # -- stepping -------------------------------------------------------------------
    def step(self) -> Row:
        """Run TRL for exactly one optimizer step; return that step's metrics row."""
        if self._thread is None:  # start TRL and let it get through its setup, untimed
            self._thread = threading.Thread(target=self._train, name="trl-grpo", daemon=True)
            self._thread.start()
            self._done.wait()
        self._raise_if_failed()
        if not self._thread.is_alive():
            raise RuntimeError(f"TRL GRPOTrainer has already finished its {self.steps} optimizer steps")
        self._reset()
        self._row = None
        self._done.clear()
        self._t_go = time.perf_counter()
        self._go.set()
        self._done.wait()
        self._raise_if_failed()
        if self._row is None:
            raise RuntimeError(f"TRL GRPOTrainer stopped before optimizer step {self.steps}")
        return self._row

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"TRL GRPOTrainer failed: {self._error!r}") from self._error

    def close(self) -> None:
        """Let TRL leave its loop (no further optimizer step) and join its thread."""
        if self._thread is not None and self._thread.is_alive():
            self._stop = True
            self._go.set()
            self._thread.join()

    def _train(self) -> None:
        try:
            self.trainer.train()
        except BaseException as e:  # handed to the bench thread, which raises it
            self._error = e
        finally:
            self._done.set()

    def _park(self, report: bool) -> None:
        """In TRL's thread: hand over a finished step's row (if any), then wait for the next go."""
        if report:
            self._row = self._make_row()
        self._done.set()
        self._go.wait()
        self._go.clear()


def _gate(peer: TRLPeer) -> Any:
    """A TrainerCallback that times the optimizer and parks TRL's thread at step boundaries."""
    from transformers import TrainerCallback

    class StepGate(TrainerCallback):
        t_opt = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            peer._park(report=False)  # setup done: the first step's clock starts at the next go

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t_opt = time.perf_counter()

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            peer._totals["optimizer"] += time.perf_counter() - self.t_opt

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            peer._park(report=True)
            if peer._stop:
                control.should_training_stop = True
            return control

    return StepGate()


def trl_dataset(cfg: Any, tokenizer: Any, task: Any, steps: int) -> tuple[Any, list[Any]]:
    """The prompts of steps 0..steps-1 in dashrl's order, rendered exactly as dashrl renders them."""
    from datasets import Dataset

    from dashrl.data.prompts import prompt_string

    examples = [ex for s in range(steps) for ex in task.batch(s, cfg.algo.prompts_per_step)]
    texts = [prompt_string(tokenizer, ex) for ex in examples]
    return Dataset.from_dict({"prompt": texts, "idx": list(range(len(examples)))}), examples


def build_trainer(
    cfg: Any, model: Any, tokenizer: Any, steps: int, generation_batch_size: int, out_dir: str
) -> tuple[Any, list[float]]:
    """A GRPOTrainer on dashrl's workload (module docstring) and the list its reward calls append to."""
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    from dashrl.data.tasks import make_task

    task = make_task(cfg.task, cfg.train.seed)
    dataset, examples = trl_dataset(cfg, tokenizer, task, steps)
    args = grpo_args(cfg, steps, generation_batch_size, out_dir)
    log: list[float] = []

    def reward(prompts: list[Any], completions: list[str], idx: list[int], **_: Any) -> list[float]:
        scores = task.score([examples[i] for i in idx], completions)
        log.extend(scores)
        return scores

    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.remove_callback(PrinterCallback)  # TRL's per-step log dicts; the bench prints its own lines
    return trainer, log


def grpo_args(cfg: Any, steps: int, generation_batch_size: int, out_dir: str, **extra: Any) -> Any:
    """TRL's `GRPOConfig` for dashrl's settings `cfg` (the module docstring says which match)."""
    from trl import GRPOConfig

    n = cfg.algo.samples_per_step
    mbs = cfg.train.micro_batch_size
    # transformers 5 renames gradient_checkpointing; TRL still uses the old name at every step
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    settings = dict(
        output_dir=out_dir,
        use_cpu=not _has_cuda(),
        bf16=cfg.model.dtype == "bf16",
        seed=cfg.train.seed,
        max_steps=steps,
        learning_rate=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        warmup_steps=cfg.train.warmup_steps,
        lr_scheduler_type={"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear"}[
            cfg.train.lr_schedule
        ],
        max_grad_norm=cfg.train.max_grad_norm,
        per_device_train_batch_size=mbs,
        gradient_accumulation_steps=n // mbs,
        generation_batch_size=generation_batch_size,
        num_generations=cfg.algo.group_size,
        beta=max(cfg.algo.beta, 0.0),
        max_completion_length=cfg.sampler.max_new_tokens,
        temperature=cfg.sampler.temperature,
        top_p=cfg.sampler.top_p,
        top_k=cfg.sampler.top_k,
        shuffle_dataset=False,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return GRPOConfig(**{**settings, **extra})


def probe_generation_batch_size(
    cfg: Any, model: Any, tokenizer: Any, out_dir: str, log: Callable[[str], None] = print
) -> tuple[int, dict[int, float]]:
    """The candidate generation batch size with the lowest measured seconds per sample, and all timings.

    Each candidate g generates g completions (the first g / G prompts of step 0, G each)
    through TRL's own generation path on a throw-away trainer; backprop does not depend on
    g, so the fastest generation per sample is TRL's best configuration.
    """
    n, mbs, G = cfg.algo.samples_per_step, cfg.train.micro_batch_size, cfg.algo.group_size
    cands = generation_batch_candidates(n, mbs, G)
    if not cands:
        raise ValueError(
            f"no TRL generation batch size holds whole groups of {G} in multiples of micro-batch {mbs} dividing {n}"
        )
    if len(cands) == 1:
        return cands[0], {}
    trainer, _ = build_trainer(cfg, model, tokenizer, 1, n, out_dir)
    texts = trainer.train_dataset["prompt"]
    per_sample = {}
    for g in cands:
        prompts = [p for p in texts[: g // G] for _ in range(G)]
        t0 = time.perf_counter()
        trainer._generate(prompts)
        per_sample[g] = (time.perf_counter() - t0) / g
        log(f"TRL generation_batch_size {g}: {per_sample[g]:.3f} s/sample")
    return min(per_sample, key=per_sample.__getitem__), per_sample


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
