"""The math grader grades a stated value: computations left in the answer, equations, and units.

Held-out sets: hand-written hacking attempts that must all score 0, and right answers written in
many forms that must all score 1; then the same rule at every place a math answer is graded.
"""

import doctest
import subprocess
import sys

import pytest

from dashrl.data import Example
from dashrl.data.arithmetic import integer_reward
from dashrl.rewards import answer_form, math_equal, math_reward, rewards

# The cases the issues name, with the reward each must get.
NAMED = [
    ("\\boxed{6 \\times 7}", "42", 0.0),
    ("\\boxed{6*7} so 40", "42", 0.0),
    ("\\boxed{6 \\cdot 7}", "42", 0.0),
    ("\\boxed{42}", "42", 1.0),
    ("\\boxed{3+4}", "7", 0.0),
    ("\\boxed{14 + 11 = 25}", "25", 1.0),
    ("\\boxed{\\frac{84}{2}}", "42", 0.0),  # unreduced: a division left to do (PRM800K's rule)
    ("The answer is 7 euros.", "7", 1.0),
    ("The answer is 7 USD.", "7", 1.0),
    ("The answer is 7 apples.", "7", 1.0),
    ("The answer is 7 hours.", "7", 1.0),
    ("The answer is 7 pounds.", "7", 1.0),
]

# Hand-written hacking attempts, none of them a stated right value: all must score 0.
HACKS = [
    # the question's computation copied into the answer
    ("\\boxed{6 \\times 7}", "42"),
    ("\\boxed{6 × 7}", "42"),
    ("\\boxed{(6)(7)}", "42"),
    ("\\boxed{6(7)}", "42"),
    ("\\boxed{84/2}", "42"),
    ("\\boxed{84 \\div 2}", "42"),
    ("\\boxed{\\dfrac{84}{2}}", "42"),
    ("\\boxed{\\frac{42}{1}}", "42"),
    ("\\boxed{48 - 6}", "42"),
    ("\\boxed{0.5 \\times 84}", "42"),
    ("\\boxed{6 x 7}", "42"),
    ("\\boxed{6 times 7}", "42"),
    ("\\boxed{20 \\times 3 + 5}", "65"),
    ("\\boxed{12 + 15 + 8}", "35"),
    ("\\boxed{7 + 0}", "7"),
    ("\\boxed{7 \\cdot 1}", "7"),
    ("\\boxed{2^3}", "8"),
    ("\\boxed{\\sqrt{49}}", "7"),
    ("\\boxed{5!}", "120"),
    ("\\boxed{\\binom{5}{2}}", "10"),
    ("\\boxed{\\sum_{i=1}^{4} i}", "10"),
    ("\\boxed{\\log_2 8}", "3"),
    ("\\boxed{\\frac{3}{4} \\cdot 8}", "6"),
    ("\\boxed{\\frac{6}{4}}", "\\frac{3}{2}"),
    ("\\boxed{\\frac{2\\pi}{4}}", "\\frac{\\pi}{2}"),
    ("\\boxed{\\sqrt{2}+\\sqrt{2}}", "2\\sqrt{2}"),
    ("\\boxed{2 + \\sqrt{2} - 1}", "1+\\sqrt{2}"),
    ("The answer is 6 \\times 7.", "42"),
    ("#### 6*7", "42"),
    ("The final answer: 48 - 6", "42"),
    # an expression followed by a wrong number
    ("\\boxed{a + b}, which is 40", "42"),
    ("\\boxed{6 \\times 7} = 41", "42"),
    ("So the total is \\boxed{3 + 4}. That makes 8 in all.", "7"),
    # equations whose final side is wrong, or is itself the computation
    ("\\boxed{14 + 11 = 24}", "25"),
    ("\\boxed{6 \\times 7 = 41}", "42"),
    ("\\boxed{42 = 6 \\times 7}", "42"),
    ("\\boxed{x = 6 \\times 7}", "42"),
    ("\\boxed{14 + 11 = 25 = 26}", "25"),
    ("The answer is 6 \\times 7 = 40.", "42"),
    # hedges and words that change the value
    ("\\boxed{42 \\text{ or } 43}", "42"),
    ("The answer is 42 or 43.", "42"),
    ("\\boxed{42, 43}", "42"),
    ("\\boxed{42 43}", "42"),
    ("The answer is 7 thousand.", "7"),
    ("The answer is 7 dozen.", "7"),
    ("The answer is 7 i.", "7"),
    ("The answer is 7 pi.", "7"),
    ("\\boxed{7x}", "7"),
]

# Right answers in many forms: all must score 1.
RIGHT = [
    ("\\boxed{42}", "42"),
    ("\\boxed{42.0}", "42"),
    ("\\boxed{+42}", "42"),
    ("\\boxed{\\mathbf{42}}", "42"),
    ("The answer is 42.", "42"),
    ("#### 42", "42"),
    ("She has 42 marbles left.", "42"),
    ("\\boxed{6 \\times 7 = 42}", "42"),
    ("The answer is 6 \\times 7 = 42.", "42"),
    ("\\boxed{x = 42}", "42"),
    ("\\boxed{n = 42}", "n = 42"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{1\\,000}", "1000"),
    ("\\boxed{1{,}000}", "1000"),
    ("\\boxed{10^3}", "1000"),
    ("\\boxed{1 \\times 10^{3}}", "1000"),
    ("\\boxed{2.5 \\cdot 10^{-1}}", "0.25"),
    ("The answer is $1,000.", "1000"),
    ("\\boxed{1.5}", "\\frac{3}{2}"),
    ("\\boxed{\\frac32}", "\\frac{3}{2}"),
    ("\\boxed{3/2}", "\\frac{3}{2}"),
    ("\\boxed{\\dfrac{3}{2}}", "\\frac{3}{2}"),
    ("\\boxed{1\\frac{1}{2}}", "\\frac{3}{2}"),
    ("\\boxed{-0.5}", "-\\frac{1}{2}"),
    ("\\boxed{-1/2}", "-\\frac{1}{2}"),
    ("\\boxed{\\frac{-1}{2}}", "-\\frac{1}{2}"),
    ("\\boxed{\\frac{84}{2}}", "\\frac{84}{2}"),  # a reference written unreduced allows it
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}"),
    ("\\boxed{2 \\sqrt 2}", "\\sqrt{8}"),
    ("\\boxed{\\frac{1}{\\sqrt{3}}}", "\\frac{\\sqrt{3}}{3}"),
    ("\\boxed{\\sqrt{2}+1}", "1+\\sqrt{2}"),
    ("\\boxed{-\\sqrt{2}+1}", "1-\\sqrt{2}"),
    ("\\boxed{\\frac{1}{2}+\\frac{\\sqrt{5}}{2}}", "\\frac{1+\\sqrt{5}}{2}"),
    ("\\boxed{4.5\\pi}", "\\frac{9\\pi}{2}"),
    ("\\boxed{\\frac{3\\pi}{4}}", "\\frac{3}{4}\\pi"),
    ("\\boxed{\\pi/2}", "\\frac{\\pi}{2}"),
    ("\\boxed{25\\%}", "25"),
    ("\\boxed{25\\%}", "0.25"),
    ("The answer is 25 percent.", "25"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{18.9}", "\\$18.90"),
    ("\\boxed{10}", "10\\text{ cm}"),
    ("\\boxed{y = 2x+1}", "2x+1"),
]

# Units and currencies around the final number (against 7): general, not a word list.
UNITS = [
    "7 euros", "7 USD", "7 EUR", "7 GBP", "7 dollars", "7 yen", "7 rupees", "USD 7", "EUR 7", "Rs 7", "INR 7",
    "€7", "7€", "£7", "¥7", "\\$7", "7 \\text{ euros}", "7\\text{ USD}", "7 apples", "7 cookies",
    "7 people", "7 hours", "7 pounds", "7 kg", "7 km/h", "7 m/s^2", "7 m^2", "7 cm³", "7 sq. ft.",
    "7 \\text{ m}^2", "7\\mathrm{cm}", "7 m", "7 °C", "7 liters of water", "7 kilómetros", "7km",
    "\\text{7 euros}",
    "7%", "7 percent", "about 7", "approximately 7 euros",
]  # fmt: skip


@pytest.mark.parametrize("completion,reference,reward", NAMED)
def test_the_named_cases(completion, reference, reward):
    assert math_reward(completion, reference) == reward


@pytest.mark.parametrize("completion,reference", HACKS)
def test_hacking_attempts_score_zero(completion, reference):
    assert math_reward(completion, reference) == 0.0


@pytest.mark.parametrize("completion,reference", RIGHT)
def test_right_answers_in_many_forms_score_one(completion, reference):
    assert math_reward(completion, reference) == 1.0


@pytest.mark.parametrize("answer", UNITS)
def test_units_and_currencies_after_or_before_the_number(answer):
    assert math_reward(f"The answer is {answer}.", "7") == 1.0
    assert math_reward(f"\\boxed{{{answer}}}", "7") == 1.0
    assert math_reward(f"The answer is {answer}.", "8") == 0.0  # the number still decides


def test_held_out_sets_are_large():
    assert len(HACKS) >= 40 and len(RIGHT) >= 40 and len(UNITS) >= 30


@pytest.mark.parametrize(
    "answer,stripped",
    [
        ("7 euros", "7"), ("7x", "7x"), ("7 e", "7 e"), ("7 thousand", "7 thousand"), ("euros", "euros"),
        ("\\frac{1}{2} cup", "\\frac{1}{2}"), ("2\\pi", "2\\pi"), ("2\\sqrt{3} cm", "2\\sqrt{3}"),
    ],
)  # fmt: skip
def test_strip_units(answer, stripped):
    assert answer_form.strip_units(answer) == stripped


def test_reference_keeps_bare_words_as_variables():
    assert answer_form.strip_units("3xy", words=False) == "3xy"
    assert math_reward("\\boxed{3}", "3xy") == 0.0
    assert math_reward("\\boxed{3xy}", "3xy") == 1.0


@pytest.mark.parametrize(
    "answer,ops",
    [
        ("42", {}), ("-\\frac{1}{2}", {}), ("1\\frac{1}{2}", {}), ("3/4", {}), ("2\\pi", {}), ("1,000", {}),
        ("6 \\times 7", {"*": 1}), ("6*7", {"*": 1}), ("(6)(7)", {"*": 1}), ("3+4-1", {"+": 2}),
        ("\\frac{84}{2}", {"/": 1}), ("6/4", {"/": 1}), ("\\frac{3\\pi}{4}", {}), ("\\frac{2\\pi}{4}", {"/": 1}),
        ("\\frac{1}{\\sqrt{3}}", {"sqrt": 1}), ("\\frac{0}{5}", {"/": 1}), ("\\frac{1}{-2}", {"/": 1}),
        ("2^{10}", {"^": 1}), ("10^{6}", {}), ("5!", {"!": 1}),
        ("\\sqrt{2}+\\sqrt{2}", {"sqrt": 2, "+": 1}), ("\\binom{5}{2}", {"binom": 1}),
    ],
)  # fmt: skip
def test_computations_counted(answer, ops):
    assert dict(answer_form.computations(answer)) == ops


@pytest.mark.parametrize(
    "reference,numeric",
    [("42", True), ("-\\frac{1}{2}", True), ("2\\sqrt{2}", True), ("\\pi", True), ("1,000", True),
     ("2x+1", False), ("(1,2]", False), ("1, 2", False), ("\\{1,2\\}", False), ("\\text{Evelyn}", False),
     ("x^2+y^2=1", False), ("\\infty", False)],
)  # fmt: skip
def test_numeric_reference(reference, numeric):
    assert answer_form.is_numeric(reference) is numeric


def test_equation_answer_is_graded_as_an_equation():
    # a reference that is an equation keeps the prediction's equation whole
    assert math_reward("\\boxed{x^2+y^2=1}", "x^2+y^2=1") == 1.0
    assert math_reward("\\boxed{1}", "x^2+y^2=1") == 0.0


def test_plain_numbers_and_rejected_computations_need_no_symbolic_check():
    # the grader runs on every sample: integers, units and copied computations settle without sympy
    code = (
        "import sys; from dashrl.rewards import math_reward as r; "
        "v = [r('\\\\boxed{42}', '42'), r('The answer is 7 euros.', '7'), r('#### 1,024', '1024'), "
        "r('\\\\boxed{6 \\\\times 7}', '42'), r('\\\\boxed{41}', '42'), r('\\\\boxed{14 + 11 = 25}', '25')]; "
        "print(v, 'math_verify' in sys.modules, 'sympy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[1.0, 1.0, 1.0, 0.0, 0.0, 1.0] False False"


CASES = [(c, r) for c, r, _ in NAMED] + HACKS[:10] + RIGHT[:10]


def test_one_rule_at_every_grading_place():
    """Training tasks (procedural and datasets), `dashrl eval`, `dashrl distill` and the study all
    grade through `math_reward`: the same completions get the same rewards everywhere."""
    from dashrl.config import TaskConfig
    from dashrl.data.tasks import make_task
    from dashrl.study.distill import select
    from dashrl.eval import _score

    expected = [math_reward(c, r) for c, r in CASES]
    examples = [Example(id=str(i), problem="?", answer=r) for i, (_, r) in enumerate(CASES)]
    texts = [c for c, _ in CASES]
    assert expected.count(0.0) >= 10 and expected.count(1.0) >= 10
    assert rewards(examples, texts) == expected
    assert _score(examples, texts, n=1, timeout=10.0) == expected  # dashrl eval, and the trainer's evaluation
    assert [integer_reward(c, r) for c, r in CASES] == expected
    for name in ("arithmetic", "wordproblems", "gsm8k"):  # the study trains and distills on these
        cfg = TaskConfig(name=name, split="test", limit=5) if name == "gsm8k" else TaskConfig(name=name)
        task = make_task(cfg, seed=0)
        assert task.score(examples, texts) == expected, name
    kept = select(texts, expected, k=len(texts))  # dashrl distill keeps what task.score graded 1.0
    assert kept == list(dict.fromkeys(t for t, s in zip(texts, expected) if s == 1.0))
    assert "\\boxed{6 \\times 7}" not in kept


def test_math_equal_never_raises_on_odd_strings():
    for odd in ["=", "= =", "x =", "\\text{}", "euros", "$", "\\frac{1}{0}", "1/0", "0/5", "10^{", "7 \\text{"]:
        assert math_equal(odd, "7") in (True, False)
        assert math_equal("7", odd) in (True, False)


def test_docstring_examples():
    result = doctest.testmod(answer_form, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
