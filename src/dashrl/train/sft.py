"""The rollout source of `--algo.name sft`: supervised records where RL has samples.

Supervised fine-tuning (the paper's SFT-H and SFT-M baselines) runs through the same loop
as RL (`dashrl.train.loop`): run folder, metrics, checkpoints, resume, loggers, eval. The
`sft` schedule (`dashrl.train.schedules.sft_step`) asks this source for a step's records
as an RL schedule asks for samples, and backprops them on the same learner with the `sft`
loss: cross-entropy on the completion tokens, the prompt and the padding masked, at
temperature 1, normalised over the whole step's completion tokens whatever the
micro-batches.

- Data (`[sft]`): `human` = the solutions that ship with `task.name`, or a JSONL of
  problem/completion records (`dashrl.data.sft`), read and checked before the model loads.
- Prompt: rendered exactly as RL renders the task's prompts (same chat template, same
  answer instruction), so one evaluation applies to SFT and RL arms alike; the completion
  ends with the tokenizer's EOS and is cut at `sft.max_tokens`.
- Order: the run's record stream is a fresh permutation of the n records per epoch, seeded
  by (train.seed, epoch), as for dataset tasks (`dashrl.data.tasks`): step s trains on
  stream positions s*M .. s*M + M - 1 (M = algo.prompts_per_step), epochs wrap, and a
  resumed run continues where it stopped.
- Ray: the records go into the object store as groups of one (`RaySource.hold`) and the
  trainer actors fetch them as they fetch sampled groups.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from dashrl.config import Config
from dashrl.data import Example
from dashrl.data.sft import build_records, sft_pairs
from dashrl.data.tasks import Task, _from_examples
from dashrl.rollout.samples import Rollouts, Sample


def load_sft_data(cfg: Config) -> list[tuple[Example, str]]:
    """The run's (example, completion) pairs per `cfg.sft`; a bad record raises DatasetError
    naming file:line and field. `dashrl.train.loop.train` calls it before the model loads.

    >>> len(load_sft_data(load_config(overrides=["--algo.name", "sft", "--task.name", "gsm8k",
    ...                                          "--task.limit", "3"])))  # doctest: +SKIP
    3
    """
    s = cfg.sft
    return sft_pairs(
        s.data, cfg.task, cfg.train.seed, problem_field=s.problem_field, completion_field=s.completion_field
    )


class SFTSource:
    """`RolloutSource` of the sft schedule: serves records, samples nothing.

    `inner` is the backend's own source (`LocalSource`, or the Ray source): it holds the
    records as the learner takes them and serves evaluation; `learner` is synced only when an
    evaluation asks for the weights.
    """

    def __init__(self, cfg: Config, pairs: Sequence[tuple[Example, str]], tokenizer: Any, inner: Any, learner: Any):
        self.cfg, self.pairs, self.tokenizer, self.inner, self.learner = cfg, list(pairs), tokenizer, inner, learner
        self.task: Task = _from_examples("sft", list(range(len(self.pairs))), cfg.train.seed)  # items: record indices
        self._samples: dict[int, Sample] = {}  # tokenized on first use

    def record(self, index: int) -> Sample:
        """Record `index` as a sample: prompt ids as RL renders them, completion + EOS, cut at sft.max_tokens."""
        if index not in self._samples:
            rec = build_records(self.tokenizer, [self.pairs[index]])[0]
            cap = self.cfg.sft.max_tokens or len(rec.completion_ids)
            ids = rec.completion_ids[:cap]
            finish = "stop" if len(ids) == len(rec.completion_ids) else "length"
            self._samples[index] = Sample(rec.prompt_ids, ids, [0.0] * len(ids), 0.0, 0.0, 0, finish)
        return self._samples[index]

    def rollout(self, examples: Sequence[int], seed: int, first_group: int = 0) -> Rollouts:
        """The records `examples` (indices) as samples, one group each; nothing is sampled."""
        t0 = time.perf_counter()
        samples = []
        for j, index in enumerate(examples):
            s = self.record(index)
            samples.append(
                Sample(s.prompt_ids, s.completion_ids, s.logprobs, 0.0, 0.0, first_group + j, s.finish_reason)
            )
        metrics = {
            "time/sampling_s": 0.0,
            "time/scoring_s": 0.0,
            "time/data_s": time.perf_counter() - t0,
            "gen/sampled_tokens": 0,
            "sft/completion_tokens": sum(s.num_tokens for s in samples),
            "sft/cut_frac": sum(s.finish_reason == "length" for s in samples) / max(len(samples), 1),
        }
        return Rollouts(self.hold(samples), metrics)  # Ray: into the object store

    def eval_sampler(self) -> Any:
        """The backend's evaluation sampler, holding the current weights."""
        self.learner.sync()  # the sft schedule does not sync after each step
        return self.inner.eval_sampler()

    def ahead(self, step: int) -> None:
        """Records need no sampling ahead."""

    def hold(self, samples: Sequence[Any]) -> list[Any]:
        """Records as the learner takes them: the backend's way (`inner.hold`)."""
        return self.inner.hold(samples)

    def warm_up(self) -> float:
        """Nothing samples or grades: nothing to warm."""
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def sft_nll(
    model: Any, tokenizer: Any, pairs: Sequence[tuple[Example, str]], batch_size: int = 8, max_tokens: int = 1024
) -> tuple[float, int]:
    """Token-mean cross-entropy of `pairs`' completions (and EOS) under `model`, prompts rendered
    and masked as the sft schedule trains them; returns `(nll, completion tokens)`. A held-out
    measure for SFT arms (the training loss of a step is on that step's records only).

    >>> sft_nll(model, tok, human_pairs("gsm8k", "test", limit=32))  # doctest: +SKIP
    (1.312, 3231)
    """
    import torch

    from dashrl.algo import Norm, sft_loss
    from dashrl.config import build_config
    from dashrl.train.learner import collate
    from dashrl.train.logprobs import completion_logprobs

    cfg = build_config({"algo": {"name": "sft"}, "sft": {"max_tokens": max_tokens}})
    src = SFTSource(cfg, pairs, tokenizer, inner=None, learner=None)
    samples = [src.record(i) for i in range(len(pairs))]
    norm = Norm(len(samples), float(sum(s.num_tokens for s in samples)), 1)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    total, was_training = 0.0, model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            mb = collate(samples[i : i + batch_size], pad, device)
            total += float(sft_loss(completion_logprobs(model, mb), mb.loss_mask, norm=norm)[0])
    model.train(was_training)
    return total, int(norm.num_tokens)
