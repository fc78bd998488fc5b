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


def build_prompt(tokenizer: Any, example: Example) -> list[int]:
    """Prompt token ids: chat template for instruct models, plain template otherwise.

    >>> build_prompt(tok, Example(id="0", problem="What is 2 + 3?", answer="5"))  # doctest: +SKIP
    [1, 9690, ...]
    """
    text = prompt_text(example)
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(PLAIN_TEMPLATE.format(question=text))["input_ids"])
