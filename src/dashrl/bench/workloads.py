"""The shared settings of `dashrl bench`'s workloads, as command-line overrides.

Every variant of a comparison runs one of these, plus its own flags and the user's overrides.
"""

from __future__ import annotations

# The paper's regime (sampling dominates a GRPO step) scaled to a CPU, and a smoke variant.
FULL = ["--task.name", "gsm8k", "--sampler.max_new_tokens", "256", "--sampler.temperature", "1.0",
        "--algo.prompts_per_step", "16", "--algo.group_size", "8", "--train.micro_batch_size", "8",
        "--train.lr", "1e-5", "--train.warmup_steps", "0"]  # fmt: skip
QUICK = ["--task.name", "arithmetic", "--task.difficulty", "1", "--sampler.max_new_tokens", "32",
         "--sampler.temperature", "0.7", "--algo.prompts_per_step", "8", "--algo.group_size", "4",
         "--train.micro_batch_size", "8", "--train.lr", "2e-5", "--train.warmup_steps", "0"]  # fmt: skip
# The paper's regime on a task the model can learn: one-step word problems with worked reasoning,
# at most 256 new tokens, T = 0.5, where SmolLM2-135M-Instruct is right 22% of the time (measured,
# 16 problems x 8 samples) and a quarter of the groups are all-wrong or all-right (what the filter drops).
WORDS = ["--task.name", "wordproblems", "--task.difficulty", "1", "--sampler.max_new_tokens", "256",
         "--sampler.temperature", "0.5", "--algo.prompts_per_step", "8", "--algo.group_size", "8",
         "--train.micro_batch_size", "8", "--train.lr", "2e-5", "--train.warmup_steps", "0"]  # fmt: skip
WORKLOADS = {"gsm8k": FULL, "wordproblems": WORDS, "arithmetic": QUICK}
# The quickstart's settings for --backprop / --sampling; alone, --workload quickstart runs `dashrl.bench.runs`.
QUICKSTART_SHARED = ["--task.name", "arithmetic", "--task.difficulty", "1", "--sampler.max_new_tokens", "48",
                     "--sampler.temperature", "0.7", "--algo.prompts_per_step", "8", "--algo.group_size", "8",
                     "--train.micro_batch_size", "8", "--train.lr", "2e-5", "--algo.beta", "0"]  # fmt: skip


def workload_flags(name: str, quick: bool) -> list[str]:
    """The shared settings of `--workload NAME` (`--quick` is the arithmetic one).

    >>> workload_flags("wordproblems", quick=False)[:2], workload_flags("gsm8k", quick=True)[:2]
    (['--task.name', 'wordproblems'], ['--task.name', 'arithmetic'])
    """
    return QUICK if quick else QUICKSTART_SHARED if name == "quickstart" else WORKLOADS[name]
