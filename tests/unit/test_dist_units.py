"""The pieces of the distributed path that need no Ray: units, seeding, packing, checks."""

from __future__ import annotations

import pytest
import torch

from dashrl.distributed.store import Delivery, RolloutStore
from dashrl.distributed.units import check_deliveries, generate_at, pack_groups, plan_units
from dashrl.rollout import SamplingParams


def test_units_are_whole_groups_and_whole_chunks():
    for M, G, bs in [(16, 8, 64), (5, 4, 8), (7, 3, 4), (4, 4, 4)]:
        units = plan_units(M, G, bs)
        covered = [g for u in units for g in range(u.first_group, u.first_group + u.num_groups)]
        assert covered == list(range(M))  # every group once, in order
        for u in units[:-1]:
            assert (u.num_groups * G) % bs == 0  # ends on a chunk boundary
        assert [u.index for u in units] == list(range(len(units)))


def test_generate_at_samples_what_one_generate_call_samples(tiny_lm):
    """Split at chunk boundaries, the pieces reproduce the single call: H-independent sampling."""
    from dashrl.rollout.hf import HFSampler

    model, tok = tiny_lm
    s = HFSampler(model, tok)
    prompts = [tok.encode(f"q{i}") for i in range(12)]
    params = SamplingParams(max_new_tokens=5, temperature=1.0, batch_size=4)
    whole = s.generate(prompts, params, seed=7)
    parts = generate_at(s, prompts[:8], params, 7, 0) + generate_at(s, prompts[8:], params, 7, 8)
    assert [c.token_ids for c in parts] == [c.token_ids for c in whole]
    assert [c.logprobs for c in parts] == [c.logprobs for c in whole]


def test_pack_groups_keeps_groups_whole_and_skips_empty():
    kept = [(0, 4), (1, 0), (2, 1), (3, 2), (4, 6), (5, 1)]
    packs = pack_groups(kept, 4)
    assert packs == [[0], [2, 3], [4], [5]]
    assert sorted(g for p in packs for g in p) == [0, 2, 3, 4, 5]


def test_store_hands_each_delivery_out_once_in_a_fixed_split():
    store = RolloutStore()
    store.fill(3, [([0, 1], 8, ["r0", "r1"]), ([2], 4, ["r2"]), ([3], 2, ["r3"])], world=2)
    b, a, c, d = store.next(1), store.next(0), store.next(0), store.next(1)  # rank 1 asks first: same split
    assert a == (Delivery(3, 0, [0, 1], 8), ["r0", "r1"])
    assert b == (Delivery(3, 1, [2], 4), ["r2"])
    assert c == (Delivery(3, 0, [3], 2), ["r3"])
    assert d is None and store.next(0) is None


def test_check_deliveries_catches_duplicates_and_losses():
    kept = {0: 4, 1: 0, 2: 3}
    check_deliveries(0, [Delivery(0, 0, [0], 4), Delivery(0, 1, [2], 3)], kept)
    with pytest.raises(RuntimeError, match="twice"):
        check_deliveries(0, [Delivery(0, 0, [0, 2], 7), Delivery(0, 1, [2], 3)], kept)
    with pytest.raises(RuntimeError, match="lost"):
        check_deliveries(0, [Delivery(0, 0, [0], 4)], kept)


def test_allreduce_on_one_trainer_is_the_identity():
    from dashrl.distributed.actors import allreduce_grads

    lin = torch.nn.Linear(2, 2)
    lin(torch.ones(1, 2)).sum().backward()
    before = lin.weight.grad.clone()
    assert allreduce_grads(lin, False, 1) is False
    assert torch.equal(lin.weight.grad, before)


def test_pin_cores_pins_every_thread_and_wraps_round_the_cores():
    """`dist.pin_cores`: in a fresh process (this one keeps its cores), a thread started
    before the pin is pinned too, and slot numbers past the last core wrap round."""
    import subprocess
    import sys

    code = (
        "import os, threading, time\n"
        "from dashrl.distributed.actors import pin_cores\n"
        "cores = sorted(os.sched_getaffinity(0)); ev = threading.Event()\n"
        "t = threading.Thread(target=ev.wait); t.start(); time.sleep(0.05)\n"
        "mine = pin_cores(len(cores) + 1, 1)\n"
        "want = [cores[1 % len(cores)]]\n"
        "assert mine == want and sorted(os.sched_getaffinity(0)) == want, (mine, want)\n"
        "assert sorted(os.sched_getaffinity(t.native_id)) == want\n"
        "ev.set(); t.join(); print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_driver_scoring_of_an_unscored_unit_is_what_the_sampler_would_have_scored(tiny_lm):
    """Ray's samplers return units unscored and the driver scores them (`score_report`): the
    rewards, advantages and sample-log info equal scoring in place, and the stored samples
    (what trainers fetch) carry no texts."""
    from dashrl.config import TaskConfig
    from dashrl.data.prompts import build_prompt
    from dashrl.data.tasks import make_task
    from dashrl.distributed.units import Unit, sample_unit, score_report
    from dashrl.rollout.hf import HFSampler

    model, tok = tiny_lm

    def odd(completions, **kwargs):
        return [float(len(c) % 2) if c else None for c in completions]

    task = make_task(TaskConfig(name="arithmetic"), 0, funcs=["integer", odd], weights=[1.0, 0.5])
    examples = task.batch(0, 2)
    params = SamplingParams(max_new_tokens=5, temperature=1.0, batch_size=4)
    args = (examples, Unit(0, 0, 2), 4, params, 3, True, 0, 0)
    scored, groups = sample_unit(HFSampler(model, tok), lambda ex: build_prompt(tok, ex), task.grade, *args)
    raw, raw_groups = sample_unit(HFSampler(model, tok), lambda ex: build_prompt(tok, ex), None, *args)
    assert raw.rewards == [0.0] * 8 and all("token_ids" in i for i in raw.infos)
    late = score_report(raw, examples, task.grade, 4, True)
    assert late.rewards == scored.rewards and late.advantages == scored.advantages
    assert late.infos == scored.infos and set(late.infos[0]) == {"id", "text", "prompt_ids", "rewards", "correct"}
    assert all(s.info == {} for g in groups + raw_groups for s in g)
    assert [s.completion_ids for g in raw_groups for s in g] == [s.completion_ids for g in groups for s in g]
