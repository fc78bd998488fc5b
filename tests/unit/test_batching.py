"""Micro-batching and collation: every sample once, groups whole, padding where expected."""

import pytest

from dashrl.train.learner import Sample, collate, micro_batches


def _samples(lengths, group_size=3):
    return [Sample([1, 2], [5] * n, [-0.5] * n, 0.0, 1.0, i // group_size, "stop") for i, n in enumerate(lengths)]


LENGTHS = [3, 1, 7, 2, 2, 9, 4, 4, 1]


@pytest.mark.parametrize("by", ["samples", "groups", "tokens"])
def test_every_sample_exactly_once(by):
    mbs = micro_batches(_samples(LENGTHS), by, size=4, token_budget=24)
    flat = sorted(i for mb in mbs for i in mb)
    assert flat == list(range(len(LENGTHS)))


def test_groups_stay_whole():
    s = _samples(LENGTHS)
    mbs = micro_batches(s, "groups", size=6)
    assert mbs == [[0, 1, 2, 3, 4, 5], [6, 7, 8]]
    for mb in mbs:
        groups = {s[i].group for i in mb}
        for g in groups:
            assert sum(1 for x in s if x.group == g) == sum(1 for i in mb if s[i].group == g)


def test_group_larger_than_micro_batch_is_split():
    assert micro_batches(_samples([1] * 5, group_size=5), "groups", size=2) == [[0, 1], [2, 3], [4]]


def test_token_budget_respected():
    s = _samples(LENGTHS)
    for mb in micro_batches(s, "tokens", size=99, token_budget=24):
        width = max(s[i].length for i in mb)
        assert width * len(mb) <= 24 or len(mb) == 1


def test_collate_layout():
    s = [
        Sample([7, 8, 9], [4, 5], [-0.1, -0.2], 1.0, 0.5, 0, "stop"),
        Sample([6], [3, 2, 1], [-0.3, -0.4, -0.5], 0.0, -0.5, 1, "length"),
    ]
    b = collate(s, pad_id=0)
    assert b.prompt_len == 3
    assert b.input_ids.tolist() == [[7, 8, 9, 4, 5, 0], [0, 0, 6, 3, 2, 1]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert b.loss_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert b.old_logprobs.flatten().tolist() == pytest.approx([-0.1, -0.2, 0.0, -0.3, -0.4, -0.5])
    assert b.advantages.tolist() == [0.5, -0.5]
    assert b.prompt_rows.tolist() == [0, 1]
    assert b.num_tokens == 9


def test_distinct_tokens_count_each_groups_prompt_once():
    # two groups: a 2-token prompt x 3 samples, then a 4-token prompt x 2 samples (left-padded to 4)
    s = [Sample([1, 2], [5] * n, [-0.5] * n, 0.0, 1.0, 0, "stop") for n in (3, 1, 2)]
    s += [Sample([1, 2, 3, 4], [5] * n, [-0.5] * n, 0.0, 1.0, 1, "stop") for n in (2, 5)]
    mb = collate(s, pad_id=0)
    assert mb.num_tokens == 3 * 2 + 2 * 4 + (3 + 1 + 2 + 2 + 5)  # every row's prompt: 27
    assert mb.distinct_tokens == 2 + 4 + (3 + 1 + 2 + 2 + 5)  # each prompt once: 19
