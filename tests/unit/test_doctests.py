"""Every docstring example in `src/dashrl` runs and gives what it says.

The modules are found by walking the source (any file with a `>>>` line), so a new module's
examples run without being listed here. An example may be skipped (`# doctest: +SKIP`) only
where it needs what a unit test cannot have (a hub model, a run folder, a trained policy, a
minutes-long run); `SKIPPED` names each such docstring and why, and an unlisted skip fails.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import dashrl

SRC = Path(dashrl.__file__).parent

# docstring (module.qualname) -> why its examples do not run here
SKIPPED = {
    "dashrl.cli.eval.run": "evaluates a hub model on a hub dataset",
    "dashrl.data.prompts.build_prompt": "needs the tokenizer of a real chat model",
    "dashrl.data.sft.build_records": "needs the tokenizer of a real chat model",
    "dashrl.data.sft.load_pairs": "reads a traces file a distill run writes",
    "dashrl.study.distill.distill": "samples from a teacher model",
    "dashrl.eval.evaluate": "samples from a model",
    "dashrl.models.load_adapter": "needs a LoRA run's checkpoint",
    "dashrl.models.load_model": "downloads a hub model",
    "dashrl.peers.trl_grpo.TRLPeer": "trains through TRL on a real model",
    "dashrl.peers.trl_task.ordered_records": "needs a user's data file and a tokenizer",
    "dashrl.peers.trl_task.run_trl": "trains through TRL on a user's data file",
    "dashrl.policy.Policy": "wraps a loaded model",
    "dashrl.cli.report.report": "needs finished run folders",
    "dashrl.rollout.make_sampler": "needs a loaded model",
    "dashrl.rollout.hf.HFSampler": "needs a loaded model",
    "dashrl.rollout.vllm.VLLMSampler": "needs vLLM (its own virtualenv) and a model",
    "dashrl.train.api.train": "a training run (minutes, a hub model)",
    "dashrl.train.checkpoint.save_checkpoint": "needs a model and a trainer state",
    "dashrl.train.loop.local_backend": "needs a loaded model",
    "dashrl.train.loop.RunResult": "a training run (minutes, a hub model)",
    "dashrl.train.loop.train": "a training run (minutes, a hub model)",
    "dashrl.train.metrics.Loggers": "writes TensorBoard files into a run folder",
    "dashrl.train.preflight.validate_run": "the message names the machine's own run folder",
    "dashrl.train.sample_log.SampleLog": "needs a tokenizer and sampled rollouts",
    "dashrl.train.sample_log.read_samples": "reads a finished run's sample log",
    "dashrl.train.sft.load_sft_data": "reads a dataset through a tokenizer",
    "dashrl.train.sft.sft_nll": "needs a loaded model",
}


def modules_with_examples() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        if ">>>" not in path.read_text():
            continue
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = modules_with_examples()


def test_the_walk_finds_the_modules_with_examples():
    assert {"dashrl.algo.advantages", "dashrl.rewards.math_grading", "dashrl.config", "dashrl.cli.eval"} <= set(MODULES)
    assert len(MODULES) > 40


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    runner = doctest.DocTestRunner(optionflags=flags)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples in {name} failed"
    skipped = {t.name for t in tests if any(ex.options.get(doctest.SKIP) for ex in t.examples)}
    unexplained = sorted(skipped - set(SKIPPED))
    assert not unexplained, f"skipped examples with no reason in SKIPPED: {unexplained}"


def test_every_skip_reason_names_a_skipped_docstring():
    skipped = set()
    for name in {k.rpartition(".")[0] for k in SKIPPED} | set(SKIPPED):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for test in doctest.DocTestFinder().find(module):
            if any(ex.options.get(doctest.SKIP) for ex in test.examples):
                skipped.add(test.name)
    assert set(SKIPPED) <= skipped, sorted(set(SKIPPED) - skipped)
