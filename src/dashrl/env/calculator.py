"""`--env.name calculator`: the shipped environment. The model gets a `calculate` tool for the
arithmetic task's problems (`--task.difficulty 3` and up: sums of numbers a 135M model cannot add in its
head); the task's own grader rewards the right final answer, so calling the tool and copying its
result pays and guessing does not (docs/environments.md tells why the default model learns this).
"""

from __future__ import annotations

import ast
import json
import operator

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
       ast.USub: operator.neg, ast.UAdd: operator.pos}  # fmt: skip


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression of numbers, + - * / and parentheses; anything else fails.

    >>> evaluate("1234 + 5678 * 2"), evaluate("-(3 - 10) / 2")
    (12590, 3.5)
    >>> evaluate("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: only numbers, + - * / and parentheses
    """
    return _eval(ast.parse(expression.strip(), mode="eval").body)


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Mult) and max(abs(left), abs(right)) > 10**12:
            raise ValueError("numbers too large")
        return OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
        return OPS[type(node.op)](_eval(node.operand))
    raise ValueError("only numbers, + - * / and parentheses")


class Calculator:
    """One calculator per rollout; it counts the model's calls (`calls`), which nothing rewards directly.

    >>> env = Calculator()
    >>> print(env.reset(problem="What is 4821 + 3907?").splitlines()[-1])
    <tool_call>{"name": "calculate", "arguments": {"expression": "4821 + 3907"}}</tool_call>
    >>> env.calculate("4821 + 3907"), env.calls
    ('8728', 1)
    """

    def reset(self, problem: str = "", **row) -> str:
        """A hint appended to the problem: the call that would answer it, written out."""
        self.calls = 0
        expression = problem.removeprefix("What is ").rstrip("?").strip() or "1 + 2"
        call = json.dumps({"name": "calculate", "arguments": {"expression": expression}})
        return f"Use the calculator first. Reply with exactly this line:\n<tool_call>{call}</tool_call>"

    def calculate(self, expression: str) -> str:
        """Evaluate an arithmetic expression and return its value.

        Args:
            expression: numbers with + - * / and parentheses, e.g. "4821 + 3907"
        """
        self.calls += 1
        value = evaluate(expression)
        return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
