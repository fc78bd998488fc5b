"""Math reward: pull the final answer out of a completion and compare it to the reference.

Extraction (`extract_answer`), first rule that matches wins:
  1. the last `\\boxed{...}` or `\\fbox{...}` (nested braces handled; `\\boxed 5` too);
  2. GSM8K style `#### 42` (the last one);
  3. "the answer is 42" / "final answer: 42" (the last one, up to the end of its line or sentence);
  4. the last number in the text (so base models that never box still get graded, as in the
     usual GSM8K evaluation). This is the loosest rule; it only ever returns a number.

Against a numeric reference the answer must state a value (`dashrl.rewards.answer_form.screen`,
string rules, no sympy): an equation counts by its final side, units and currency around the
number are dropped, an answer that leaves a computation (`6 \\times 7`, `3+4`, `\\frac{84}{2}`)
is wrong, and two plain integers are compared there and then. What is left, and every answer to
a reference that is not a number, goes through math-verify (numbers, fractions, radicals, pi,
intervals, sets, tuples, units, degrees, percent). Before all that, LaTeX spacing commands are
dropped (`1\\,000` is 1000) and answers longer than `MAX_ANSWER_CHARS` score 0.0.
docs/rewards.md says what the grader accepts.

Safety: `math_reward` never raises and returns 0.0 for anything it cannot grade. A reference that
does not parse scores 0.0 for every completion (some graders reward everything in that case).
Time: in the main thread every math-verify step runs under math-verify's own `signal.alarm`
timeout (`timeout` seconds, at least 1); a step that runs out scores 0.0. Signals only work in the
main thread, so called from another thread there is no time bound beyond the length cap.
"""

from __future__ import annotations

import re
import threading

from dashrl.rewards.answer_form import screen

MAX_ANSWER_CHARS = 500  # an extracted answer longer than this is not graded (0.0)

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_HASH_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?\s*(.+?)(?:\.\s|\.?$|\n)",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_SPACING_BETWEEN_DIGITS_RE = re.compile(r"(?<=\d)\s*\\[,!;:]\s*(?=\d)")
_SPACING_RE = re.compile(r"\\[,!;:]|(?<!\\)\\ |\\q?quad\b")  # `\ ` is a space, `\\ ` a new row


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at `text[start] == "{"`, or None if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`)."""
    for match in reversed(list(_BOX_RE.finditer(text))):
        end = match.end()
        if end < len(text) and text[end] == "{":
            content = _braced(text, end)
            if content is not None:
                return content.strip()
        elif match.group(0).endswith((" ", "\t")) or (end < len(text) and text[end].isalnum()):
            word = re.match(r"[^\s$]+", text[end:])  # `\boxed 5` without braces
            if word:
                return word.group(0).rstrip(".")
    return None


def extract_answer(text: str) -> str | None:
    """The final answer written in a completion, or None when there is none.

    >>> extract_answer(r"so $x = \\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    hashes = _HASH_RE.findall(text)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip()
    answer_is = _ANSWER_IS_RE.findall(text)
    if answer_is and answer_is[-1].strip(" $*"):
        return answer_is[-1].strip(" $*")
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def normalize_latex(answer: str) -> str:
    """Drop LaTeX spacing commands (`\\,` between digits is a thousands separator); `°` is `^\\circ`.

    >>> normalize_latex(r"1\\,000 \\text{ m}")
    '1000 \\\\text{ m}'
    """
    answer = _SPACING_BETWEEN_DIGITS_RE.sub("", answer).replace("°", "^\\circ ")
    return _SPACING_RE.sub(" ", answer).strip()


def _parse(latex: str, timeout: int | None) -> list:
    from math_verify import parse

    return parse("\\boxed{" + latex + "}", parsing_timeout=timeout)


def math_equal(prediction: str, reference: str, timeout: float = 2.0) -> bool:
    """Whether two final answers are mathematically equal (reference first). Never raises.

    >>> math_equal("0.5", r"\\frac{1}{2}")
    True
    """
    try:
        if not prediction or not reference or len(prediction) > MAX_ANSWER_CHARS:
            return False
        verdict, prediction, reference = screen(normalize_latex(prediction), normalize_latex(reference))
        if verdict is not None:
            return verdict
        from math_verify import verify

        in_main = threading.current_thread() is threading.main_thread()
        seconds = max(1, int(round(timeout))) if in_main else None
        gold = _parse(reference, seconds)
        if not gold:  # unparseable reference: nothing matches it
            return False
        pred = _parse(prediction, seconds)
        if not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=seconds))
    except BaseException as err:  # noqa: BLE001 - a grader must not take the trainer down
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        return False


def math_reward(completion: str, answer: str, timeout: float = 2.0) -> float:
    """1.0 if the completion's final answer equals the reference `answer`, else 0.0.

    >>> math_reward(r"... so the total is \\boxed{1,000}.", "1000")
    1.0
    >>> math_reward(r"\\boxed{6 \\times 7}", "42"), math_reward("The answer is 7 euros.", "7")
    (0.0, 1.0)
    """
    extracted = extract_answer(completion) if isinstance(completion, str) else None
    if extracted is None or not isinstance(answer, str):
        return 0.0
    return 1.0 if math_equal(extracted, answer, timeout=timeout) else 0.0
