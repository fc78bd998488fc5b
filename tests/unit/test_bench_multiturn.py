"""`dashrl bench --multiturn` on the tiny model: the single-turn arm samples as many tokens as the
multi-turn one in one call, and every cell of the table is its formula of the arms."""

from __future__ import annotations

import math

from conftest import AskOnce
from markdown_table import read_table, shows

from dashrl.bench.multiturn import Arm, best, table, time_arms
from dashrl.data import Example
from dashrl.env.loading import EnvSpec
from dashrl.env.rollout import Limits
from dashrl.rollout.base import SamplingParams


def test_arms_sample_the_same_tokens_and_the_table_is_their_formula(tiny_lm):
    model, tok = tiny_lm
    model.generation_config.eos_token_id = [tok.eos_token_id, *tok.convert_tokens_to_ids(list("abcdefghij"))]
    examples = [Example(id=str(i), problem=f"Say a {i}", answer="a") for i in range(2)]
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    multi, single = time_arms(model, tok, examples, 3, params, EnvSpec(AskOnce), Limits(max_turns=2))
    assert multi.trajectories == single.trajectories == 6
    assert multi.generate_calls == 2 and single.generate_calls == 1 and multi.env_tokens > 0
    assert single.model_tokens == 6 * math.ceil(multi.model_tokens / 6)  # no stop token: every row that long
    arms = best([[multi, single], [Arm("multi-turn", 6, 1, 0, 2, 0.01), Arm("single-turn", 6, 1, 0, 1, 0.02)]])
    assert arms[0].seconds == min(multi.seconds, 0.01) and arms[0].model_tokens == multi.model_tokens
    rows = read_table(table(arms))
    base = arms[1].model_tokens / arms[1].seconds
    for a in arms:
        r = rows[a.name]
        assert int(r["model tokens"]) == a.model_tokens and int(r["env tokens"]) == a.env_tokens
        assert int(r["generate calls"]) == a.generate_calls and shows(r["seconds"], a.seconds)
        assert shows(r["model tokens/s"], a.model_tokens / a.seconds)
        assert shows(r["vs single-turn"], (a.model_tokens / a.seconds) / base)
