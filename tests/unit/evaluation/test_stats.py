"""Tests for evaluation.stats: each test and effect size against a reference implementation
(statsmodels / scipy / hand formulas)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from evaluation import stats as sig


# --------------------------------------------------------------------------- #
# Per-pair statistics
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (57, 100), (1, 1), (480, 1000)])
def test_wilson_matches_statsmodels(k, n):
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    lo, hi = sig.wilson_ci(k, n)
    ref_lo, ref_hi = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    assert float(lo) == pytest.approx(ref_lo, abs=1e-12)
    assert float(hi) == pytest.approx(ref_hi, abs=1e-12)


def test_wilson_zero_n_is_undefined():
    lo, hi = sig.wilson_ci(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_sign_test_matches_scipy_binomtest():
    ks, ns = [], []
    for n in (1, 2, 5, 10, 11, 30, 101, 400):
        for k in sorted({0, 1, n // 3, n // 2, (n + 1) // 2, n - 1, n}):
            if 0 <= k <= n:
                ks.append(k)
                ns.append(n)
    ours = sig.sign_test(ks, ns)
    ref = [stats.binomtest(k, n, 0.5, alternative="two-sided").pvalue for k, n in zip(ks, ns)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-15)
    assert np.isnan(sig.sign_test(0, 0))


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 10, 37):
        p = rng.random(m) ** 3
        p[rng.random(m) < 0.2] = p[0]  # duplicated p-values
        ref = multitest.multipletests(p, alpha=0.05, method="holm")[1]
        np.testing.assert_allclose(sig.holm(p), ref, rtol=1e-12)
    # NaN (untested pair) is excluded from the family and stays NaN
    with_nan = sig.holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2]], multitest.multipletests([0.01, 0.04], method="holm")[1])


def test_cohens_h_hand_computed():
    assert float(sig.cohens_h(0.7)) == pytest.approx(2 * math.asin(math.sqrt(0.7)) - math.pi / 2)
    assert float(sig.cohens_h(0.5)) == 0.0
    assert float(sig.cohens_h(1.0)) == pytest.approx(math.pi / 2)
    assert float(sig.cohens_h(0.2, 0.6)) == pytest.approx(2 * math.asin(math.sqrt(0.2)) - 2 * math.asin(math.sqrt(0.6)))


def test_power_estimate_matches_statsmodels_and_hand_formula():
    power_mod = pytest.importorskip("statsmodels.stats.power")
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    for h in (0.05, 0.1, 0.3, 0.5, -0.4):
        n_hand = (z / abs(h)) ** 2
        n_sm = power_mod.NormalIndPower().solve_power(effect_size=abs(h), alpha=0.05, power=0.8, ratio=0)
        assert sig.votes_for_power(h, 0) == math.ceil(n_hand)
        assert abs(sig.votes_for_power(h, 0) - n_sm) < 1
    assert sig.votes_for_power(0.3, 50) == math.ceil((z / 0.3) ** 2) - 50 == 38
    assert sig.votes_for_power(0.3, 1000) == 0
    assert sig.votes_for_power(0.0, 10) is None
    assert sig.votes_for_power(None, 10) is None


# --------------------------------------------------------------------------- #
# Score data
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mann_whitney_matches_scipy(alternative):
    rng = np.random.default_rng(0)
    x = rng.integers(3, 11, 40)  # 1-10 scores with many ties
    y = rng.integers(1, 9, 35)
    ours = sig.mann_whitney(x, y, alternative)
    ref = stats.mannwhitneyu(x, y, alternative=alternative)
    assert ours.u == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    small = sig.mann_whitney([3, 5, 9], [1, 4, 6, 2], alternative)  # exact branch
    assert small.p_value == pytest.approx(stats.mannwhitneyu([3, 5, 9], [1, 4, 6, 2], alternative=alternative).pvalue)


def test_mann_whitney_effect_sizes_and_validation():
    res = sig.mann_whitney([3, 5], [1, 4])  # pairs x > y: (3,1) (5,1) (5,4) -> U = 3
    assert res.u == 3 and res.cles == 0.75 and res.rank_biserial == 0.5
    assert sig.mann_whitney([1, 2, 3], [7, 8, 9], "greater").p_value > 0.5
    json.dumps(res.to_dict(), allow_nan=False)
    with pytest.raises(ValueError):
        sig.mann_whitney([1, 2], [3], "bigger")


def test_cohens_d_hand_computed():
    x = [7, 8, 6, 9, 7, 8]
    y = [5, 6, 6, 4, 7]
    nx, ny = len(x), len(y)
    mx, my = sum(x) / nx, sum(y) / ny
    vx = sum((v - mx) ** 2 for v in x) / (nx - 1)
    vy = sum((v - my) ** 2 for v in y) / (ny - 1)
    d = (mx - my) / math.sqrt(((nx - 1) * vx + (ny - 1) * vy) / (nx + ny - 2))
    se = math.sqrt((nx + ny) / (nx * ny) + d * d / (2 * (nx + ny)))
    res = sig.cohens_d(x, y)
    assert res.d == pytest.approx(d)
    assert res.se == pytest.approx(se)
    assert (res.ci_low, res.ci_high) == pytest.approx((d - 1.959963984540054 * se, d + 1.959963984540054 * se))
    assert res.hedges_g == pytest.approx(d * (1 - 3 / (4 * (nx + ny) - 9)))
    assert sig.cohens_d(y, x).d == pytest.approx(-d)
    with pytest.raises(ValueError):
        sig.cohens_d([1], [2, 3])
