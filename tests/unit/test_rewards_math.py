"""Math reward: extraction rules, equal / unequal pairs, and the failure modes that must score 0."""

import threading

import pytest

from dashrl.rewards import extract_answer, math_equal, math_reward

EQUAL = [
    # numbers: commas, trailing zeros, signs, scientific-ish
    ("1,000", "1000"),
    ("1\\,000", "1000"),
    ("2.50", "2.5"),
    ("3.0", "3"),
    ("-7", "-7"),
    ("10^{6}", "1000000"),
    ("1000000", "10^6"),
    # fractions
    ("\\dfrac{1}{2}", "0.5"),
    ("\\frac12", "1/2"),
    ("0.5", "\\frac{1}{2}"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}"),
    ("\\tfrac{7}{2}", "3.5"),
    # percent
    ("50\\%", "50"),
    ("1.5\\%", "0.015"),
    # radicals and pi
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("2\\pi", "\\pi \\cdot 2"),
    ("\\frac{\\pi}{2}", "\\dfrac{\\pi}{2}"),
    # intervals, sets, tuples
    ("(1,2]", "(1, 2]"),
    ("[1,2]", "1 \\le x \\le 2"),
    ("(-\\infty, 3)", "(-\\infty,3)"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("1, 2", "2, 1"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    # equations
    ("x = 3", "3"),
    ("3", "x=3"),
    ("y = 2x+1", "2x+1"),
    ("x=2, x=3", "2, 3"),
    # text and units around a number, degrees, money
    ("10 \\text{ cm}", "10"),
    ("12\\text{ inches}", "12"),
    ("90^\\circ", "90"),
    ("30^{\\circ}", "30^\\circ"),
    ("\\$5", "5"),
    ("5\\ \\text{dollars}", "5"),
    # algebra and text answers
    ("x^2+2x+1", "(x+1)^2"),
    ("\\text{(C)}", "C"),
    ("\\text{Evelyn}", "\\text{Evelyn}"),
    ("\\infty", "\\infty"),
]

UNEQUAL = [
    ("2", "3"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("5", "5.0001"),
    ("\\pi", "3.14159"),
    ("[1,2)", "(1,2]"),
    ("(3,4)", "(4,3)"),
    ("2", "1,2"),
    ("2", "2\\text{ and }3"),
    ("\\text{Monday}", "\\text{Tuesday}"),
    ("-7", "7"),
    ("\\sqrt{2}", "2"),
    ("x^2", "2x"),
    ("10\\%", "10.5"),
    ("1000", "100"),
]


@pytest.mark.parametrize("prediction,reference", EQUAL)
def test_equal_pairs(prediction, reference):
    assert math_reward(f"Thus the answer is $\\boxed{{{prediction}}}$.", reference) == 1.0


@pytest.mark.parametrize("prediction,reference", UNEQUAL)
def test_unequal_pairs(prediction, reference):
    assert math_reward(f"\\boxed{{{prediction}}}", reference) == 0.0


def test_case_count():
    assert len(EQUAL) + len(UNEQUAL) >= 40


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{\\frac{1}{2}} and finally \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("nested \\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}"),
        ("\\fbox{42} is it", "42"),
        ("\\boxed 5.", "5"),
        ("Step 1 ... 5 apples\n#### 1,234", "1,234"),
        ("We get 3 and 4. The answer is 72.", "72"),
        ("Final answer: $x = 3$", "x = 3"),
        ("there are 3 cats and 17 dogs", "17"),
        ("no numbers here", None),
        ("", None),
        ("\\boxed{unclosed 3", "3"),  # an unclosed box falls back to the last number
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_boxed_beats_fallbacks():
    assert math_reward("The answer is 5. Actually \\boxed{6}", "6") == 1.0
    assert math_reward("The answer is 5. Actually \\boxed{6}", "5") == 0.0


def test_gsm8k_style_and_last_number():
    assert math_reward("48/2 = 24 clips in May.\n#### 72", "72") == 1.0
    assert math_reward("So she earned $10.", "10") == 1.0


def test_unparseable_reference_rewards_nothing():
    for bad in ["", "\\frac{", "}{", "\\boxed{"]:
        assert math_reward("\\boxed{3}", bad) == 0.0
        assert math_reward("", bad) == 0.0


def test_no_answer_scores_zero():
    assert math_reward("I don't know.", "3") == 0.0
    assert math_reward("", "3") == 0.0


def test_never_raises_on_garbage():
    for completion in ["\\boxed{\\frac{1}{0}}", "\\boxed{)(}", "\\boxed{\\\\\\\\}", "\\boxed{" + "{" * 500]:
        assert math_reward(completion, "1") in (0.0, 1.0)
    assert math_reward(None, "1") == 0.0  # type: ignore[arg-type]
    assert math_reward("\\boxed{1}", None) == 0.0  # type: ignore[arg-type]


def test_overlong_answer_not_graded():
    assert math_equal("1+" * 400 + "1", "401") is False


def test_huge_power_times_out_to_zero():
    # 9^(9^9) would take minutes and gigabytes; the 1 s per-step timeout turns it into 0.0.
    assert math_reward("\\boxed{9^{387420489}}", "3", timeout=1.0) == 0.0


def test_works_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(math_reward("\\boxed{0.5}", "\\frac12")))
    thread.start()
    thread.join(timeout=30)
    assert results == [1.0]
