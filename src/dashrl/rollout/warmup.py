"""Start-up work that would otherwise land on step 1: first calls of the grader and the sampler.

The first grade imports the math grader's parser (`math_verify`, sympy) and parses once; the
first generate call at the run's batch size allocates its KV buffers and sets up the CPU
kernels for those shapes. Paid here, once, they leave step 1 as long as any later step, so
time to reward and the progress line's ETA are honest. The loop logs the whole start-up (model
load, learner, this) as `time/startup_s` in the first row a process writes.

Nothing here changes the run: the sampler draws from a generator of its own (the same seed
gives the same samples with or without a warm-up), no weight or optimizer state moves, and a
reward function of the user's (`reward.funcs`) is never called on made-up completions.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

WARM_TOKENS = 4  # new tokens per sequence in the sampler's warm-up call


def warm_up(host: Any, task: Any) -> float:
    """Warm `task`'s grader and `host`'s sampler (`dashrl.rollout.samples.SamplerHost`) on step 1's
    problems; returns seconds. `LocalSource.warm_up` calls it; the Ray and SFT sources warm nothing."""
    t0 = time.perf_counter()
    a = host.cfg.algo
    examples = task.batch(0, a.prompts_per_step)  # step 1's problems: the shapes step 1 will have
    warm_grader(task, examples[0])
    prompts = [host.prompt_ids(ex) for ex in examples for _ in range(a.group_size)]
    warm_sampler(host.sampler, prompts, host.params)
    return time.perf_counter() - t0


def warm_grader(task: Any, example: Any) -> None:
    """The task's own check on one made-up answer of `example`, when that check is the math rule
    (an example with a reference answer, no code tests, no user functions)."""
    if task.funcs or getattr(example, "tests", None) is not None or getattr(example, "answer", None) is None:
        return
    from dashrl.rewards.math_grading import math_equal

    math_equal("1/2", "0.5")  # imports math_verify and sympy and parses: the costs of the first symbolic check
    task.score([example], ["\\boxed{1/2}"])  # the task's own path once


def warm_sampler(sampler: Any, prompts: list[list[int]], params: Any) -> None:
    """One short generate call on the first `params.batch_size` of `prompts` (step 1's first call's shapes)."""
    sampler.generate(
        prompts[: params.batch_size], replace(params, max_new_tokens=min(WARM_TOKENS, params.max_new_tokens)), seed=0
    )
