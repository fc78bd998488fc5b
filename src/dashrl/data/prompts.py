"""Problems -> prompt token ids, through the model's chat template or a plain template."""

from __future__ import annotations

from typing import Any

from dashrl.data import Example

MATH_SUFFIX = "Put your final answer within \\boxed{}."
CODE_SUFFIX = "Write your solution as a Python function in a ```python code block."
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


def prompt_text(example: Example) -> str:
    """The user message for an example: the problem plus the answer-format instruction."""
    suffix = CODE_SUFFIX if example.kind == "code" else MATH_SUFFIX
    return f"{example.problem.strip()}\n{suffix}"


def render_messages(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Chat messages as the model sees them: its chat template with the generation prompt
    (system message kept); without a template, `role: content` lines and `assistant:`.

    >>> class Plain: chat_template = None
    >>> render_messages(Plain(), [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
    'system: Be brief.\\nuser: 2+2?\\nassistant:'
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


def prompt_string(tokenizer: Any, example: Example) -> str:
    """The full prompt as text: the chat template for instruct models, the plain template otherwise;
    an example with chat `messages` is those messages through the chat template."""
    if example.messages is not None:
        return render_messages(tokenizer, example.messages)
    text = prompt_text(example)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    return PLAIN_TEMPLATE.format(question=text)


def build_prompt(tokenizer: Any, example: Example) -> list[int]:
    """Prompt token ids of `prompt_string` (no extra special tokens after a chat template).

    >>> build_prompt(tok, Example(id="0", problem="What is 2 + 3?", answer="5"))  # doctest: +SKIP
    [1, 9690, ...]
    """
    rendered = prompt_string(tokenizer, example)
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(rendered)["input_ids"])
