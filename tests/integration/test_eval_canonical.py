"""Slow: every canonical solution of the shipped code sets passes its own tests in the sandbox.

Run with `pytest -m slow tests/integration/test_eval_canonical.py` (a few minutes on 2 cores).
"""

import gzip
import json

import pytest

from dashrl.data.datasets import FILES, load_dataset
from dashrl.rewards.sandbox import Limits, run_many

pytestmark = pytest.mark.slow

# Heavy upstream tests that need more than these limits even for the canonical solution:
# HumanEval/139 (reference + program > 20 s), Mbpp/255 (> 2 GiB, 14 s), Mbpp/599 (about 40 s).
KNOWN_SLOW = {"HumanEval/139", "Mbpp/255", "Mbpp/599"}


def _records(rel):
    with gzip.open(FILES / rel, "rt") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("name", ["humaneval", "humanevalplus", "mbppplus", "mbpp"])
def test_canonical_solutions_pass(name):
    if name.startswith("humaneval"):
        ref = {
            r["task_id"]: r["prompt"] + r["canonical_solution"] for r in _records("code/HumanEvalPlus-v0.1.10.jsonl.gz")
        }
        examples = load_dataset(name)
        programs = [ref[ex.id] for ex in examples]
    else:
        rel = "code/MbppPlus-OriginFmt-v0.2.0.jsonl.gz" if name == "mbppplus" else "code/mbpp.jsonl.gz"
        ref = {r["task_id"]: r["code"] for r in _records(rel)}
        examples = load_dataset(name, "all" if name == "mbppplus" else None)
        programs = [ref[int(ex.id.split("/")[1])] for ex in examples]
    results = run_many([(p, ex.tests) for p, ex in zip(programs, examples)], Limits(timeout=20.0))
    failed = {ex.id for ex, r in zip(examples, results) if r.status != "passed"}
    assert failed <= KNOWN_SLOW, sorted(failed)
