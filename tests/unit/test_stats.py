"""Study statistics: wall-clock truncation, curve stability, bootstrap intervals, verdicts."""

import math

import pytest

from dashrl.stats import bootstrap_ci, cumulative, curve_stability, paired_bootstrap_diff, truncate_to_time, verdict


def test_truncation_picks_the_last_step_within_the_budget():
    # PPO-Multi steps take 3 s each; DASH finished in 10 s: PPO is read at its 3rd step (9 s)
    ppo = cumulative([3.0] * 6)
    assert ppo == [3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
    assert truncate_to_time(ppo, 10.0) == 2
    assert truncate_to_time(ppo, 12.0) == 3  # a step ending exactly at the budget counts
    assert truncate_to_time(ppo, 100.0) == 5  # the whole run fits
    assert truncate_to_time(ppo, 2.9) is None
    # uneven steps: the rule is on cumulative time, not on the step count
    assert truncate_to_time(cumulative([1.0, 8.0, 1.0, 1.0]), 10.5) == 2
    with pytest.raises(ValueError):
        truncate_to_time([2.0, 1.0], 5.0)


def test_curve_stability_hand_computed():
    stable = curve_stability([0.1, 0.2, 0.3, 0.4, 0.5])
    assert stable["step_change_std"] < 1e-12 and stable["largest_drop"] == 0.0
    jumpy = curve_stability([0.5, 0.9, 0.2, 0.8])  # changes 0.4, -0.7, 0.6: mean 0.1
    assert jumpy["largest_drop"] == pytest.approx(0.7)
    assert jumpy["step_change_std"] == pytest.approx(math.sqrt((0.3**2 + 0.8**2 + 0.5**2) / 2))


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    small = [1.0, 0.0] * 10
    large = [1.0, 0.0] * 200
    m, lo, hi = bootstrap_ci(small, seed=1)
    M, LO, HI = bootstrap_ci(large, seed=1)
    assert m == M == 0.5 and lo < 0.5 < hi and LO < 0.5 < HI
    assert (HI - LO) < (hi - lo) / 3  # ~1/sqrt(20) as wide
    assert bootstrap_ci(small, seed=1) == (m, lo, hi)  # seeded: repeatable


def test_paired_difference_and_verdicts():
    a = [1.0] * 80 + [0.0] * 20
    b = [1.0] * 50 + [0.0] * 50
    diff, lo, hi = paired_bootstrap_diff(a, b)
    assert diff == pytest.approx(0.3) and 0.2 < lo < 0.3 < hi < 0.4
    assert verdict(lo, hi, +1) == "reproduced" and verdict(lo, hi, -1) == "contradicted"
    same = paired_bootstrap_diff(a, a)
    assert same == (0.0, 0.0, 0.0) and verdict(*same[1:], +1) == "inconclusive"
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [1.0, 0.0])
