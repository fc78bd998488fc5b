"""What a final answer states: its value side, its number without units, and the work it leaves.

`screen(prediction, reference)` runs before any symbolic check (`math_grading.math_equal`) and
settles what it can with string rules alone, in microseconds:

- **Numeric references only.** The rules below apply when the reference is one number (`42`,
  `x = 3`, `\\frac{\\sqrt{3}}{2}`, `10\\text{ cm}`). Any other reference (algebra, an equation,
  a set, an interval, text) goes to math-verify with the prediction unchanged, as it reads them.
- **Value side.** A reference `x = 3` is graded as `3`; a prediction that is an equation
  (`14 + 11 = 25`) by its final side, as the Minerva grader does. Lists (`x = 2, x = 3`) and
  text (`x = 2 \\text{ or } x = 3`) stay whole.
- **Units.** Words after the final number (`7 euros`, `7 USD`, `7 km/h`, `7 \\text{ m}^2`), words
  or currency signs before it (`USD 7`, `€7`, `\\$7`) are not part of the value. Any word counts
  as a unit except the few that change a value (`NOT_UNITS`: `thousand`, `pi`, `or`, ...), so no
  list of units is needed. A single bare letter counts only after a space and never as `e` or
  `i`: `7x` and `7 i` stay mathematics.
- **Stated values.** The prediction may not leave more computation than the reference holds:
  `computations` counts the operations in each (`+`/`-`, explicit `*`, `/`, `^`, `!`, `\\sqrt`,
  and every other command or function name such as `\\binom`, `\\log`, `\\sum`), and the
  prediction loses when it has more of any kind. So `6 \\times 7`, `3+4` and `\\sqrt{4}` are wrong
  against 42, 7 and 2. Written values are not operations: integers, decimals, thousands
  separators, percent, degrees, scientific notation (`2 \\times 10^{3}`, `1e6`), a coefficient
  written against a constant or radical (`2\\pi`, `3\\sqrt{2}`), a mixed number, and a fraction in
  lowest terms: two such terms whose coefficients share no factor (`\\frac{3}{2}`, `-3/2`,
  `\\frac{3\\pi}{4}`, `\\pi/2`, `\\frac{1}{\\sqrt{3}}`; a root in it still counts as a root). An
  unreduced fraction (`\\frac{84}{2}` against 42, `\\frac{6}{4}` against `\\frac{3}{2}`) is a
  division left to do, as in the PRM800K grader; a reference that is itself unreduced allows it.
- **Plain numbers.** Two integers compare exactly; two decimals that are equal are equal. Only
  what is left goes to math-verify (decimals it may round, fractions, radicals, sets, algebra).
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from math import gcd

NOT_UNITS = frozenset(
    "and or not no nor minus negative plus times over divided by sqrt root log ln lg exp sin cos tan cot sec "
    "csc mod gcd lcm max min abs floor ceil pi e i inf infinity infty thousand thousands million millions "
    "billion billions trillion trillions hundred hundreds dozen dozens half halves third thirds quarter "
    "quarters squared cubed".split()
)  # words that change a value or combine values: never a unit
VALUE_COMMANDS = frozenset({"pi", "overline", "infty"})  # written values, not operations
NUMERIC_COMMANDS = frozenset(
    "frac dfrac tfrac cfrac sqrt pi cdot times div over ast log ln lg exp sin cos tan cot sec csc arcsin "
    "arccos arctan binom dbinom tbinom overline".split()
)  # a reference using only these (and no letters) has one numeric value
OPERATORS = {"frac": "/", "dfrac": "/", "tfrac": "/", "cfrac": "/", "over": "/", "div": "/"}
OPERATORS |= {"times": "*", "cdot": "*", "ast": "*"}  # each command's operation; other commands count by name

_FORMAT_RE = re.compile(
    r"\\(?:text(?:rm|bf|it|normal|sf|tt)?|math(?:rm|bf|it|sf|tt)|mbox|boldsymbol|bm|displaystyle|textstyle|"
    r"left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![A-Za-z])"
)
_CURRENCY = r"\\\$|\$|€|£|¥|₹|¢|₩"
_POWER = r"(?:\s*\^\s*\{?\s*[23]\s*\}?|[²³])?"  # m^2, cm³
_TEXT_TAIL_RE = re.compile(r"\\(?:text\w*|math(?:rm|it|bf|sf)|mbox|operatorname)\s*\{([^{}\d]*)\}" + _POWER + r"\s*$")
_WORD_TAIL_RE = re.compile(r"(?<!\\)(?<![^\W\d])([^\W\d_]+(?:\s?[./]\s?[^\W\d_]+)*)\.?" + _POWER + r"\s*$")
_WORD_HEAD_RE = re.compile(r"^\s*([^\W\d_]{2,})\.?\s*(?=[-+]?[\d.\\$€£¥₹])")
_CURRENCY_RE = re.compile(rf"^\s*(?:{_CURRENCY})\s*|\s*(?:{_CURRENCY})\s*$")
_PERCENT_WORD_RE = re.compile(r"(?<=[\d}])\s*(?:per\s?cent|pct)\.?\s*$", re.IGNORECASE)
_TRAILING_PUNCT_RE = re.compile(r"[\s.,;:!?]+$")
_WRAPPED_RE = re.compile(r"^\\(?:text\w*|mbox|math(?:rm|bf))\s*\{([^{}]*\d[^{}]*)\}$")  # \text{18 dollars}

_VAR_LHS_RE = re.compile(r"^\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?(?:\s*\([^()=]*\))?\s*=(?!=)\s*")
_EQUALS_RE = re.compile(r"(?<![<>!=:\\])=(?!=)")
_LIST_RE = re.compile(r"[,;]|\\text|\\mbox|\b(?:or|and)\b")

_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:,|\{,\})\d{3})+)(?![\d])")
_SCI_RE = re.compile(
    r"\d+(?:\.\d+)?\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*(?:\{\s*[-+]?\d+\s*\}|[-+]?\d+)"
    r"|(?<![\d.])10\s*\^\s*(?:\{\s*[-+]?\d+\s*\}|[-+]?\d+)"
    r"|\d(?:\.\d+)?[eE][-+]?\d+"
)
_ATOM = r"\\pi|\\sqrt\s*\{\s*\d+\s*\}|\\sqrt\s*\d"  # a constant or a root of an integer
_MONO = rf"[-+]?\s*(?:\d+\s*(?:{_ATOM})?|{_ATOM})"  # 3, -2\pi, \sqrt{3}: one term, coefficient first
_MONO_RE = re.compile(rf"\s*([-+]?)\s*(\d*)\s*({_ATOM})?\s*")
_FRAC_RE = re.compile(rf"\\[dtc]?frac\s*(?:\{{({_MONO})\s*\}}|(\d))\s*(?:\{{({_MONO})\s*\}}|(\d))")
_SLASH_RE = re.compile(rf"(?<![\w.#}}^])({_MONO})\s*/\s*({_MONO})(?![\w.#{{^(])")
_NOTATION_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\%|%|\\degree|" + _CURRENCY)
_UNICODE = str.maketrans(
    {"−": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "√": "\\sqrt", "π": "\\pi", "²": "^2", "³": "^3"}
)
_PLAIN_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def _top_level(text: str) -> list[int]:
    """Offsets of the `=` signs outside any brace or bracket group."""
    depth, hits = 0, []
    for match in re.finditer(r"[{(\[]|[})\]]|" + _EQUALS_RE.pattern, text):
        token = match.group(0)
        if token in "{([":
            depth += 1
        elif token in "})]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            hits.append(match.start())
    return hits


def value_side(answer: str) -> str:
    """The value of `x = value` (a single symbol on the left), else the answer unchanged.

    >>> value_side("x = 3"), value_side("f(x)=2x+1"), value_side("x^2 + y^2 = 1")
    ('3', '2x+1', 'x^2 + y^2 = 1')
    """
    match = _VAR_LHS_RE.match(answer)
    if match and not _top_level(answer[match.end() :]) and not _LIST_RE.search(answer):
        return answer[match.end() :].strip()
    return answer


def final_side(answer: str) -> str:
    """The last side of an equation chain (`14 + 11 = 25` -> `25`); lists and text stay whole.

    >>> final_side("14 + 11 = 25"), final_side("x=2, x=3"), final_side("a \\\\le 3")
    ('25', 'x=2, x=3', 'a \\\\le 3')
    """
    hits = _top_level(answer)
    if not hits or _LIST_RE.search(answer):
        return answer
    return answer[hits[-1] + 1 :].strip() or answer


def _is_unit(word: str, spaced: bool) -> bool:
    words = re.findall(r"[^\W\d_]+", word)
    if not words or any(w.lower() in NOT_UNITS for w in words):
        return False
    return len(word) > 1 or spaced  # `7x` is a product; `7 m` a length


def strip_units(answer: str, words: bool = True) -> str:
    """The answer without unit words or currency around its number; unchanged when no number stays.

    With `words=False` only `\\text{...}` units and currency signs go (for references, where a
    bare word after a number is a variable: `3ab`).

    >>> strip_units("7 euros"), strip_units("USD 7"), strip_units("\\\\$7.50"), strip_units("7 km/h")
    ('7', '7', '7.50', '7')
    >>> strip_units("12\\\\text{ inches}"), strip_units("7 thousand"), strip_units("7x"), strip_units("7 i")
    ('12', '7 thousand', '7x', '7 i')
    """
    text = _PERCENT_WORD_RE.sub(r"\\%", _WRAPPED_RE.sub(r"\1", answer.strip()))
    while True:
        before = text
        text = _TRAILING_PUNCT_RE.sub("", _CURRENCY_RE.sub("", text))
        tail = _TEXT_TAIL_RE.search(text)
        if tail and _is_unit(tail.group(1).strip(), True):
            text = text[: tail.start()]
        tail = _WORD_TAIL_RE.search(text) if words else None
        if tail and tail.start() > 0 and _is_unit(tail.group(1), text[tail.start() - 1].isspace()):
            text = text[: tail.start()]
        head = _WORD_HEAD_RE.match(text) if words else None
        if head and _is_unit(head.group(1), True):
            text = text[head.end() :]
        text = text.strip()
        if not re.search(r"\d", text):
            return answer.strip()
        if text == before:
            return text


def _canon(answer: str) -> str:
    """Formatting, notation and separators dropped, for counting operations."""
    text = re.sub(r"\\sqrt\s*\[[^\]]*\]", r"\\sqrt", _FORMAT_RE.sub("", answer))  # a root of any degree
    text = _NOTATION_RE.sub("", text)
    return _drop_thousands(text.translate(_UNICODE).replace("**", "^"))


def _drop_thousands(text: str) -> str:
    return _THOUSANDS_RE.sub(lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), text)


def _lowest_terms(num: str, den: str) -> str | None:
    """A fraction of two terms with coprime coefficients (`\\frac{3\\pi}{4}`, `1/\\sqrt{3}`), written as
    a value (`#`, its roots kept to be counted); None when something divides out or the
    denominator is a bare 1 or carries a sign."""
    (sign_n, a, atom_n), (sign_d, b, atom_d) = (_MONO_RE.fullmatch(x).groups() for x in (num, den))
    a, b = int(a or 1), int(b or 1)
    if sign_d or a == 0 or b == 0 or gcd(a, b) != 1 or (b == 1 and not atom_d) or (atom_n and atom_n == atom_d):
        return None
    return "#" + "".join(atom for atom in (atom_n, atom_d) if atom and "sqrt" in atom)


def _fraction(match: re.Match) -> str:
    groups = [g for g in match.groups() if g is not None]
    return _lowest_terms(*groups) or match.group(0)


def computations(answer: str) -> Counter:
    """How many of each operation an answer leaves to be done (written values count none).

    >>> sorted(computations("6 \\\\times 7").items()), sorted(computations("\\\\frac{84}{2}").items())
    ([('*', 1)], [('/', 1)])
    >>> computations("-\\\\frac{3}{2}"), computations("2 \\\\times 10^{3}"), computations("2\\\\sqrt{2}")
    (Counter(), Counter(), Counter({'sqrt': 1}))
    """
    text = _SCI_RE.sub("#", _canon(answer))
    text = _FRAC_RE.sub(_fraction, text)
    text = _SLASH_RE.sub(_fraction, text)
    ops: Counter = Counter()
    ops["*"] += len(re.findall(r"\d\s+(?=\d)|\)\s*\(|\d\s*\(|\)\s*\d", text))  # juxtaposed numbers or groups
    for name in re.findall(r"\\([A-Za-z]+)", text):
        if name not in VALUE_COMMANDS:
            ops[OPERATORS.get(name, name)] += 1
    text = re.sub(r"\\[A-Za-z]+", "#", text)
    for word in re.findall(r"[^\W\d_]+", text):
        if word.lower() not in VALUE_COMMANDS:
            ops[word.lower()] += 1
    text = re.sub(r"\s+", "", text)
    ops["+"] += len(re.findall(r"(?<=[\w}).#!])[-+]", text))  # binary + and -; a sign is not counted
    ops["*"] += text.count("*")
    ops["/"] += text.count("/")
    ops["^"] += text.count("^")
    ops["!"] += len(re.findall(r"(?<=[\w})#])!", text))
    return +ops


def is_numeric(reference: str) -> bool:
    """Whether a (unit-free) reference is one number: no variables, lists, sets, intervals or relations.

    >>> is_numeric("42"), is_numeric("\\\\frac{\\\\sqrt{3}}{2}"), is_numeric("2x+1"), is_numeric("(1,2]")
    (True, True, False, False)
    """
    text = _canon(reference)
    if not re.search(r"\d|\\pi", text) or re.search(r"[,;\[\]|<>=]|\\[{}]", text):
        return False
    if any(name not in NUMERIC_COMMANDS for name in re.findall(r"\\([A-Za-z]+)", text)):
        return False
    return not re.search(r"[^\W\d_]", re.sub(r"\\[A-Za-z]+", "", text))


def plain_number(answer: str) -> Fraction | None:
    """The value of a plain integer or decimal (thousands separators allowed), else None.

    >>> plain_number("1,000"), plain_number("-2.50"), plain_number("3+4")
    (Fraction(1000, 1), Fraction(-5, 2), None)
    """
    text = _drop_thousands(answer.strip())
    return Fraction(text) if _PLAIN_RE.fullmatch(text) else None


def screen(prediction: str, reference: str) -> tuple[bool | None, str, str]:
    """(verdict, prediction, reference): a verdict when string rules settle it, else None and
    the two answers for the symbolic check (their value sides, without units, when the
    reference is a number; unchanged otherwise).

    >>> screen("6 \\\\times 7", "42")[0], screen("14 + 11 = 25", "25")[0], screen("7 euros", "7")[0]
    (False, True, True)
    >>> screen("\\\\frac{1}{2}", "0.5"), screen("y - x = 1", "y = x + 1")
    ((None, '\\\\frac{1}{2}', '0.5'), (None, 'y - x = 1', 'y = x + 1'))
    """
    ref = strip_units(value_side(reference.strip()), words=False)
    if not is_numeric(ref):  # algebra, sets, intervals, text: math-verify alone, as it reads them
        return None, prediction, reference
    pred = strip_units(final_side(strip_units(prediction)))
    a, b = plain_number(pred), plain_number(ref)
    if a is not None and b is not None and (a == b or ("." not in pred and "." not in ref)):
        return a == b, pred, ref
    need, have = computations(pred), computations(ref)
    if any(count > have[op] for op, count in need.items()):
        return False, pred, ref
    return None, pred, ref
