"""Chat-template arithmetic for multi-turn rollouts: the first prompt of a trajectory (with the
tools described, by the template where it supports tools, else in a system message in the
Hermes form), and the tokens of the environment's messages appended after a model turn.

Token in, token out: history is never re-rendered and re-tokenized. The tokens of new messages
are found once per message by rendering a two-message stand-in conversation with and without them
and tokenizing the difference (`delta_ids`); the model's sampled tokens stay as sampled.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from dashrl.env.tools import EnvError

SENTINEL = "\x1fDASHRL_ASSISTANT\x1f"  # stands for a model turn's text in the stand-in conversation

TOOL_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list (transformers' tool-use templates).

    >>> class T: chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    >>> supports_tools(T())
    False
    """
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def tool_prompt(schemas: Sequence[dict[str, Any]]) -> str:
    """The tools described in a system message, in the form Qwen2.5's template writes them.

    >>> print(tool_prompt([{"type": "function", "function": {"name": "f"}}]).splitlines()[6])
    {"type": "function", "function": {"name": "f"}}
    """
    return TOOL_PROMPT.format(tools="\n".join(json.dumps(s) for s in schemas))


def render(tokenizer: Any, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None,
           generation: bool) -> str:  # fmt: skip
    """Messages through the chat template (`tools` passed where it takes them); without a
    template, `role: content` lines (as `dashrl.data.prompts.render_messages`)."""
    if getattr(tokenizer, "chat_template", None):
        kwargs = {"tools": list(tools)} if tools and supports_tools(tokenizer) else {}
        return tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation, tokenize=False, **kwargs)
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return text + ("\nassistant:" if generation else "")


def first_messages(messages: list[dict[str, Any]], extra: str | None, schemas: Sequence[dict[str, Any]],
                   native_tools: bool) -> list[dict[str, Any]]:  # fmt: skip
    """A trajectory's opening messages: `extra` (what `reset` returned) appended to the last user
    message, and, where the template cannot take tools, their description leading the system message.

    >>> first_messages([{"role": "user", "content": "Hi"}], "Go.", [], False)
    [{'role': 'user', 'content': 'Hi\\n\\nGo.'}]
    """
    out = [dict(m) for m in messages]
    if extra:
        last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
        if last is None:
            out.append({"role": "user", "content": extra})
        else:
            out[last]["content"] = f"{out[last]['content']}\n\n{extra}"
    if schemas and not native_tools:
        described = tool_prompt(schemas)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{described}\n\n{out[0]['content']}"
        else:
            out.insert(0, {"role": "system", "content": described})
    return out


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text, adding no special tokens (the template wrote its own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def env_messages(answers: Sequence[tuple[str, str]], native_tools: bool) -> list[dict[str, str]]:
    """The messages of a turn's environment side: `(role, text)` pairs, roles "tool" or "user".
    Tool answers are "tool" messages where the template supports tools; otherwise one user message
    holding each answer in `<tool_response>` tags (Hermes' form).

    >>> env_messages([("tool", "5"), ("tool", "6")], False)
    [{'role': 'user', 'content': '<tool_response>\\n5\\n</tool_response>\\n<tool_response>\\n6\\n</tool_response>'}]
    """
    if native_tools or all(role != "tool" for role, _ in answers):
        return [{"role": role, "content": text} for role, text in answers]
    wrapped = "\n".join(f"<tool_response>\n{text}\n</tool_response>" for _, text in answers)
    return [{"role": "user", "content": wrapped}]


def delta_ids(tokenizer: Any, messages: Sequence[dict[str, Any]], stop_text: str,
              tools: Sequence[dict[str, Any]] | None = None) -> list[int]:  # fmt: skip
    """Tokens to append after a model turn that ended with the token whose text is `stop_text`
    ("" if none): the rest of the template's end of that turn, `messages`, and the next
    generation prompt. Rendered on a stand-in conversation, so history is never re-tokenized."""
    base = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": SENTINEL}]
    before = render(tokenizer, base, tools, generation=False)
    after = render(tokenizer, [*base, *messages], tools, generation=True)
    if not after.startswith(before) or SENTINEL not in before:
        raise EnvError("the chat template renders earlier messages differently once a message is added; "
                       "dashrl appends tokens and cannot use it for multi-turn rollouts")  # fmt: skip
    tail = before[before.rindex(SENTINEL) + len(SENTINEL) :]
    if stop_text and tail.startswith(stop_text):
        tail = tail[len(stop_text) :]
    return encode(tokenizer, tail + after[len(before) :])
