"""Tests of prift.metrics: pass@k, avg@k, bootstrap CIs, summaries."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from prift import metrics as M

from prift.metrics import (
    avg_at_k,
    bootstrap_ci,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_statistic,
    summarise,
)


# ----------------------------------------------------------------------------- pass@k

def _pass_at_k_bruteforce(n: int, c: int, k: int) -> Fraction:
    """Exact: fraction of the k-subsets of n samples (c correct) holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hit = sum(any(samples[i] for i in s) for s in subsets)
    return Fraction(hit, len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_bruteforce(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = _pass_at_k_bruteforce(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


def test_pass_at_k_edge_cases():
    assert pass_at_k(16, 0, 16) == 0.0
    assert pass_at_k(16, 1, 16) == 1.0
    assert pass_at_k(16, 16, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # large n stays finite and in [0, 1] (the product form avoids huge binomials)
    v = pass_at_k(2000, 7, 64)
    assert 0.0 < v < 1.0
    assert v == pytest.approx(1 - float(Fraction(math.comb(1993, 64), math.comb(2000, 64))), rel=1e-9)


def test_pass_at_k_errors():
    with pytest.raises(ValueError) as ei:
        pass_at_k(4, 1, 5)
    msg = str(ei.value)
    assert "k=5" in msg and "n=4" in msg
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)
    with pytest.raises(TypeError):
        pass_at_k(4.0, 1, 1)


# ----------------------------------------------------------------------------- avg@k, curves

M3x4 = [
    [True, False, False, True],
    [False, False, False, False],
    [True, True, True, False],
]


def test_avg_at_k_by_hand():
    # column accuracies: 2/3, 1/3, 1/3, 1/3 -> mean 5/12 ; all entries: 5/12
    assert avg_at_k(M3x4) == pytest.approx(5 / 12)
    cols = np.asarray(M3x4).mean(axis=0)
    assert avg_at_k(M3x4) == pytest.approx(cols.mean())
    assert avg_at_k(np.asarray(M3x4, dtype=int)) == pytest.approx(5 / 12)
    assert avg_at_k([[True]]) == 1.0


def test_avg_at_k_ragged_and_empty():
    with pytest.raises(ValueError, match="ragged"):
        avg_at_k([[True, False], [True]])
    with pytest.raises(ValueError):
        avg_at_k([])
    with pytest.raises(ValueError):
        avg_at_k([[2, 0]])


def test_pass_at_n_is_fraction_solved():
    curve = pass_at_k_curve(M3x4, [1, 2, 4])
    assert curve[4] == pytest.approx(2 / 3)  # rows 0 and 2 solved
    assert curve[1] == pytest.approx(avg_at_k(M3x4))  # pass@1 == avg accuracy
    # pass@2 by hand: row0 c=2 -> 1-C(2,2)/C(4,2)=5/6 ; row1 0 ; row2 c=3 -> 1
    assert curve[2] == pytest.approx((5 / 6 + 0 + 1) / 3)
    ks = list(range(1, 5))
    vals = [pass_at_k_curve(M3x4, ks)[k] for k in ks]
    assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))  # monotone in k
    with pytest.raises(ValueError):
        pass_at_k_curve(M3x4, [5])


# ----------------------------------------------------------------------------- bootstrap

def _bootstrap_reference(correct, statistic, n_boot, alpha, seed):
    """Plain loop with the documented draws."""
    m = np.asarray(correct, dtype=bool)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m.shape[0], size=(n_boot, m.shape[0]))
    reps = []
    for b in range(n_boot):
        sample = [list(m[i]) for i in idx[b]]
        reps.append(statistic(sample))
    return tuple(np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


def _random_matrix(p, s, seed):
    rng = np.random.default_rng(seed)
    difficulty = rng.random(p)
    return rng.random((p, s)) < difficulty[:, None]


@pytest.mark.parametrize("stat_name", ["avg", "pass4", "custom"])
def test_bootstrap_matches_loop_reference(stat_name):
    m = _random_matrix(40, 8, seed=1)
    if stat_name == "avg":
        stat = avg_at_k
    elif stat_name == "pass4":
        stat = pass_at_k_statistic(4)
    else:
        def stat(x):  # no per_problem hook: generic path
            return float(np.asarray(x, dtype=float)[:, :2].max(axis=1).mean())
    got = bootstrap_ci(m, stat, n_boot=300, alpha=0.1, seed=7)
    ref = _bootstrap_reference(m, stat, n_boot=300, alpha=0.1, seed=7)
    assert got == pytest.approx(ref, abs=1e-12)


def test_bootstrap_deterministic_contains_estimate_and_shrinks():
    small = _random_matrix(30, 16, seed=2)
    large = _random_matrix(3000, 16, seed=2)
    a = bootstrap_ci(small, avg_at_k, seed=3)
    assert a == bootstrap_ci(small, avg_at_k, seed=3)
    assert a != bootstrap_ci(small, avg_at_k, seed=4)
    for m in (small, large):
        for stat in (avg_at_k, pass_at_k_statistic(16), pass_at_k_statistic(4)):
            lo, hi = bootstrap_ci(m, stat)
            assert lo <= stat(m) <= hi
    w_small = np.subtract(*bootstrap_ci(small, avg_at_k)[::-1])
    w_large = np.subtract(*bootstrap_ci(large, avg_at_k)[::-1])
    assert 0 < w_large < w_small / 3


def test_bootstrap_argument_errors():
    with pytest.raises(ValueError):
        bootstrap_ci(M3x4, avg_at_k, alpha=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci(M3x4, avg_at_k, n_boot=0)


# ----------------------------------------------------------------------------- summarise

def test_summarise():
    m = _random_matrix(50, 16, seed=5)
    s = summarise(m, 16)
    assert s["n_problems"] == 50 and s["n_samples"] == 16 and s["k"] == 16
    assert s["avg@16"] == pytest.approx(100 * m.mean())
    assert s["pass@16"] == pytest.approx(100 * m.any(axis=1).mean())
    for key in ("avg@16", "pass@16"):
        lo, hi = s[f"{key}_ci"]
        assert 0 <= lo <= s[key] <= hi <= 100
    s4 = summarise(m, 4)
    assert s4["pass@4"] == pytest.approx(100 * pass_at_k_curve(m, [4])[4])
    assert s4["avg@4"] == pytest.approx(s["avg@16"])
    with pytest.raises(ValueError):
        summarise(m, 17)


# ----------------------------------------------------------------------------------------------------------------------
# paired comparisons (issue 19): independent float64 computations

def test_per_problem_scores_are_the_tables_shares():
    m = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    assert np.allclose(M.per_problem_scores(m, "avg@4"), [0.5, 0.0, 1.0])
    assert np.allclose(M.per_problem_scores(m, "pass@2"), [1 - math.comb(2, 2) / math.comb(4, 2), 0.0, 1.0])
    assert np.allclose(M.per_problem_scores(m[:, :1], "acc"), [1.0, 0.0, 1.0])
    assert M.per_problem_scores(m, "pass@4").mean() == pytest.approx(M.pass_at_k_curve(m, [4])[4])
    with pytest.raises(ValueError, match="no per-problem scores"):
        M.per_problem_scores(m, "f1")


def test_sign_flip_p_value_equals_brute_force_enumeration():
    import itertools
    a = [0.9, 0.4, 0.75, 0.1, 0.6, 0.3]
    b = [0.5, 0.5, 0.25, 0.0, 0.6, 0.1]
    d = [x - y for x, y in zip(a, b)]
    t0 = abs(sum(d) / len(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d)) / len(d)) >= t0 - 1e-15
               for signs in itertools.product((1, -1), repeat=len(d)))
    r = M.paired_difference(a, b)
    assert r["p"] == pytest.approx(hits / 2 ** len(d), abs=1e-15)
    assert r["delta"] == pytest.approx(100 * sum(d) / len(d)) and r["n_problems"] == 6


def test_paired_bootstrap_has_the_analytic_mean_and_variance():
    """The paired bootstrap of a mean difference: E[Δ*] = Δ and Var[Δ*] = (1/n)·mean((d - d̄)²); for an average over
    strata resampled within each, Var = Σ_s var_s / (n_s S²). Checked on the replicates' own mean and variance."""
    g = np.random.default_rng(3)
    a1, b1 = g.random(40), g.random(40)
    a2, b2 = g.random(25), g.random(25)
    for a, b, strata in (([a1], [b1], 1), ([a1, a2], [b1, b2], 2)):
        d = [x - y for x, y in zip(a, b)]
        want_var = sum(((x - x.mean()) ** 2).mean() / len(x) for x in d) / strata ** 2
        rng = np.random.default_rng(7)
        reps = np.mean([x[rng.integers(0, len(x), size=(40000, len(x)))].mean(axis=1) for x in d], axis=0)
        assert reps.var() == pytest.approx(want_var, rel=0.03)           # the reference computation itself
        r = M.paired_difference(a if strata > 1 else a[0], b if strata > 1 else b[0], n_boot=40000, seed=7)
        delta = np.mean([x.mean() for x in d])
        assert r["delta"] == pytest.approx(100 * delta)
        lo, hi = r["ci"]
        sd = 100 * math.sqrt(want_var)
        assert lo == pytest.approx(100 * delta - 1.96 * sd, abs=0.12 * sd)  # ~ normal: ±1.96 sd
        assert hi == pytest.approx(100 * delta + 1.96 * sd, abs=0.12 * sd)


def test_paired_test_sees_a_consistent_small_gain_and_not_noise():
    """A gain on every one of 30 problems is significant even if small; no difference gives p = 1; an unpaired
    reading of the same numbers would see nothing (the pairing is the point)."""
    base = np.linspace(0.05, 0.95, 30)
    r = M.paired_difference(base + 0.02, base, n_perm=20000)
    assert r["p"] < 1e-3 and r["ci"][0] > 0
    assert M.paired_difference(base, base)["p"] == 1.0


def test_holm_matches_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, 1·0.04 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.06
    assert M.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert M.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_bootstrap_over_seeds_equals_a_loop_over_replicates():
    """Runs repeated over seeds: each replicate draws the seeds (the same for every benchmark) and then each
    benchmark's problems, jointly for both methods; the statistic is the mean over the drawn seeds x problems. An
    explicit loop over replicates, in float64, with the same draws."""
    g = np.random.default_rng(5)
    S, sizes, n_boot, seed = 3, (7, 5), 300, 11
    a = [g.random((S, n)) for n in sizes]
    b = [g.random((S, n)) for n in sizes]
    r = M.paired_difference(a, b, n_boot=n_boot, seed=seed)
    d = [x - y for x, y in zip(a, b)]
    rng = np.random.default_rng(seed)
    sidx = rng.integers(0, S, size=(n_boot, S))
    pidx = [rng.integers(0, n, size=(n_boot, n)) for n in sizes]
    reps = []
    for i in range(n_boot):
        per = []
        for x, p in zip(d, pidx):
            cells = [x[sidx[i, j], p[i, k]] for j in range(S) for k in range(x.shape[1])]
            per.append(sum(cells) / len(cells))
        reps.append(sum(per) / len(per))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert r["ci"] == pytest.approx((100 * lo, 100 * hi), abs=1e-12)
    assert r["delta"] == pytest.approx(100 * np.mean([x.mean() for x in d]), abs=1e-12)
    assert r["n_seeds"] == S and r["n_problems"] == sum(sizes)


def test_paired_interval_carries_the_seed_to_seed_spread():
    """Two seeds whose differences are constant over problems (0 and 0.1): the replicates are the mean of two drawn
    seeds, 0, 0.05 or 0.1 with probabilities 1/4, 1/2, 1/4, so the 95% interval is [0, 10] points; one seed alone
    (no spread over problems) has the point interval. A [1, problems] array is the one-seed case, draw for draw."""
    a = [np.array([[0.5] * 20, [0.6] * 20])]
    b = [np.array([[0.5] * 20, [0.5] * 20])]
    r = M.paired_difference(a, b, n_boot=4000)
    assert r["delta"] == pytest.approx(5.0) and r["ci"] == pytest.approx((0.0, 10.0))
    assert M.paired_difference([a[0][1:]], [b[0][1:]])["ci"] == pytest.approx((10.0, 10.0))
    g = np.random.default_rng(2)
    x, y = g.random(30), g.random(30)
    assert M.paired_difference([x[None]], [y[None]], seed=4) == M.paired_difference(x, y, seed=4) | {"n_seeds": 1}
