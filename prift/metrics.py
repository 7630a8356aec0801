"""Sampling metrics of the paper's tables: Avg@k, Pass@k and bootstrap CIs.

All functions take a ``correct`` matrix of booleans, one row per problem and
one column per sampled response (problems x samples), as a nested list or a
2-D numpy array.  ``avg_at_k`` and ``pass_at_k_curve`` return fractions in
[0, 1]; :func:`summarise` reports percentages (0-100) like the paper.

* Avg@k: mean accuracy over the k sampled runs (= mean over all entries).
* Pass@k: the unbiased estimator of Chen et al. (2021),
  ``1 - C(n-c, k) / C(n, k)`` per problem with n samples of which c are
  correct, averaged over problems.  With k == n it is the fraction of
  problems solved by at least one sample (the paper's Pass@16 with 16 runs).
* Bootstrap: percentile intervals from resampling *problems* (rows) with
  replacement.
* Paired comparisons of two methods on the same problems (:func:`paired_difference`): the difference of their
  per-problem scores, a paired bootstrap interval (problems resampled jointly for both methods, within each
  benchmark for an average over benchmarks), a sign-flip permutation p-value, and Holm's correction (:func:`holm`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "pass_at_k",
    "avg_at_k",
    "pass_at_k_curve",
    "pass_at_k_statistic",
    "bootstrap_ci",
    "summarise",
    "per_problem_scores",
    "paired_difference",
    "holm",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate for one problem: ``1 - C(n-c, k) / C(n, k)``.

    Computed in the numerically stable product form
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (Chen et al., 2021).
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {v!r}")
    n, c, k = int(n), int(c), int(k)
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"k={k} is larger than the number of samples n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"c={c} must lie in [0, n={n}]")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _as_matrix(correct: Any) -> np.ndarray:
    """Validate a problems x samples matrix and return it as a bool array."""
    if isinstance(correct, np.ndarray):
        arr = correct
        if arr.ndim != 2:
            raise ValueError(f"correct must be 2-D (problems x samples), got shape {arr.shape}")
    else:
        rows = [list(r) for r in correct]
        if not rows:
            raise ValueError("correct has no problems (rows)")
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            raise ValueError(
                f"ragged correct matrix: rows have {sorted(lengths)} samples; "
                "every problem needs the same number of samples"
            )
        arr = np.asarray(rows)
    if arr.shape[0] == 0:
        raise ValueError("correct has no problems (rows)")
    if arr.shape[1] == 0:
        raise ValueError("correct has no samples (columns)")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("correct must contain booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def _avg_per_problem(m: np.ndarray) -> np.ndarray:
    return m.mean(axis=1)


def avg_at_k(correct: Sequence[Sequence[bool]] | np.ndarray) -> float:
    """Mean accuracy over the sampled runs (fraction in [0, 1]).

    Equals the mean over the k sample columns of each column's accuracy, and
    the mean of all entries; ragged rows raise ``ValueError``.
    """
    m = _as_matrix(correct)
    return float(m.mean())


# Vectorised bootstrap hook: the statistic is the mean of these per-problem scores.
avg_at_k.per_problem = _avg_per_problem  # type: ignore[attr-defined]


def _pass_per_problem(m: np.ndarray, k: int) -> np.ndarray:
    n = m.shape[1]
    cs = m.sum(axis=1)
    table = np.array([pass_at_k(n, int(c), k) for c in range(n + 1)])
    return table[cs]


def pass_at_k_curve(correct: Sequence[Sequence[bool]] | np.ndarray, ks: Iterable[int]) -> dict[int, float]:
    """``{k: mean over problems of pass_at_k(n, c_i, k)}`` (fractions in [0, 1])."""
    m = _as_matrix(correct)
    return {int(k): float(_pass_per_problem(m, int(k)).mean()) for k in ks}


def pass_at_k_statistic(k: int) -> Callable[[np.ndarray], float]:
    """The pass@k of a problems x samples matrix, as a statistic for :func:`bootstrap_ci`."""

    def stat(correct) -> float:
        return pass_at_k_curve(correct, [k])[k]

    stat.per_problem = lambda m: _pass_per_problem(m, k)  # type: ignore[attr-defined]
    stat.__name__ = f"pass_at_{k}"
    return stat


def bootstrap_ci(
    correct: Sequence[Sequence[bool]] | np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over problems.

    Draws ``idx = numpy.random.default_rng(seed).integers(0, P, size=(n_boot, P))``
    (P problems); replicate b is ``statistic(correct[idx[b]])``, and the
    interval is the ``alpha/2`` and ``1 - alpha/2`` percentiles (numpy's
    linear interpolation) of the replicates.  Statistics that are a mean of
    per-problem scores (:func:`avg_at_k`, :func:`pass_at_k_statistic`; they
    carry a ``per_problem`` attribute) are computed for all replicates at
    once; other callables are evaluated replicate by replicate.
    """
    m = _as_matrix(correct)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    p = m.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, p, size=(int(n_boot), p))
    per_problem = getattr(statistic, "per_problem", None)
    if per_problem is not None:
        scores = np.asarray(per_problem(m), dtype=float)
        reps = scores[idx].mean(axis=1)
    else:
        reps = np.fromiter((float(statistic(m[row])) for row in idx), dtype=float, count=len(idx))
    lo, hi = np.percentile(reps, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def summarise(
    correct: Sequence[Sequence[bool]] | np.ndarray,
    k: int,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Avg@k and Pass@k in percent (0-100) with bootstrap CIs.

    Keys: ``"avg@{k}"``, ``"pass@{k}"``, ``"avg@{k}_ci"``, ``"pass@{k}_ci"``
    (``(low, high)`` in percent), ``"k"``, ``"n_problems"``, ``"n_samples"``.
    With more than k samples per problem, Avg@k is the mean over all samples
    (its unbiased estimate) and Pass@k the unbiased estimator.
    """
    m = _as_matrix(correct)
    n = m.shape[1]
    if k > n:
        raise ValueError(f"k={k} is larger than the number of samples per problem n={n}")
    pstat = pass_at_k_statistic(k)
    avg = avg_at_k(m)
    pas = pstat(m)
    a_lo, a_hi = bootstrap_ci(m, avg_at_k, n_boot=n_boot, alpha=alpha, seed=seed)
    p_lo, p_hi = bootstrap_ci(m, pstat, n_boot=n_boot, alpha=alpha, seed=seed)
    return {
        f"avg@{k}": 100.0 * avg,
        f"pass@{k}": 100.0 * pas,
        f"avg@{k}_ci": (100.0 * a_lo, 100.0 * a_hi),
        f"pass@{k}_ci": (100.0 * p_lo, 100.0 * p_hi),
        "k": int(k),
        "n_problems": int(m.shape[0]),
        "n_samples": int(n),
    }



# ----------------------------------------------------------------------------------------------------------------------
# Paired comparisons: two methods on the same problems


def per_problem_scores(correct: Sequence[Sequence[bool]] | np.ndarray, metric: str) -> np.ndarray:
    """Each problem's share of a metric whose table value is their mean: ``avg@k`` the problem's accuracy over its
    samples, ``pass@k`` the unbiased pass@k estimate, ``acc`` / ``pass@1`` its single verdict (fractions)."""
    m = _as_matrix(correct)
    kind, _, k = metric.partition("@")
    if kind == "avg" or metric == "acc":
        return m.mean(axis=1)
    if kind == "pass":
        return _pass_per_problem(m, int(k))
    raise ValueError(f"no per-problem scores for metric {metric!r} (avg@k, pass@k, acc)")


_EXACT_FLIPS = 16   # up to this many problems the sign-flip test enumerates all 2^n sign vectors


def paired_difference(a, b, *, n_boot: int = 2000, n_perm: int = 20000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Method A minus method B on the same problems.

    ``a`` and ``b`` are per-problem scores (:func:`per_problem_scores`) in the same problem order: one sequence (one
    benchmark), or one entry per benchmark (strata), each a sequence over problems or, for runs repeated over seeds,
    a [seeds, problems] array (seed i of A paired with seed i of B: the same seed's data order and samples). The
    statistic is the mean over strata of the mean difference within each stratum (over its seeds and problems) - the
    difference of the tables' averages over benchmarks. Returns, in percentage points: ``delta``; ``ci`` = the
    percentile interval of a paired bootstrap that resamples the problems of each stratum with replacement, the same
    problems for both methods, and with several seeds first the seeds (with replacement, the same for every
    stratum: a seed is one trained model), so that the interval carries the seed-to-seed spread too; ``p`` = the
    two-sided p-value of a sign-flip permutation test on the per-problem differences (averaged over seeds): under
    H0 the two methods' scores of a problem are exchangeable, each difference flips sign with probability 1/2;
    exact by enumeration up to 16 problems, else ``(1 + #{|T*| >= |T|}) / (1 + n_perm)``; ``n_problems``;
    ``n_seeds``. With one seed the draws are those of the one-seed bootstrap."""
    def strata(x):
        first = np.asarray(x[0], dtype=float)
        parts = [x] if first.ndim == 0 else list(x)
        return [np.atleast_2d(np.asarray(p, dtype=float)) for p in parts]

    strata_a, strata_b = strata(a), strata(b)
    shapes = [x.shape for x in strata_a]
    if (shapes != [x.shape for x in strata_b] or not strata_a or not all(s[1] for s in shapes)
            or len({s[0] for s in shapes}) != 1):
        raise ValueError("paired_difference: both methods need scores for the same, non-empty problem sets and the "
                         "same seeds in every stratum")
    d = [x - y for x, y in zip(strata_a, strata_b)]                     # each [seeds, problems]
    n_seeds = shapes[0][0]
    delta = float(np.mean([x.mean() for x in d]))
    rng = np.random.default_rng(seed)
    if n_seeds == 1:
        boot = np.mean([x[0][rng.integers(0, x.shape[1], size=(int(n_boot), x.shape[1]))].mean(axis=1) for x in d],
                       axis=0)
    else:
        sidx = rng.integers(0, n_seeds, size=(int(n_boot), n_seeds))   # the seeds of each replicate, all strata
        per = []
        for x in d:
            pidx = rng.integers(0, x.shape[1], size=(int(n_boot), x.shape[1]))
            rows = x[sidx]                                               # [n_boot, seeds, problems]
            drawn = np.take_along_axis(rows, np.broadcast_to(pidx[:, None, :], rows.shape), axis=2)
            per.append(drawn.mean(axis=(1, 2)))
        boot = np.mean(per, axis=0)
    lo, hi = np.percentile(boot, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    dm = [x.mean(axis=0) for x in d]                                     # per-problem differences, seeds averaged
    weights = np.concatenate([np.full(len(x), 1.0 / (len(x) * len(dm))) for x in dm])   # T = sum_i w_i d_i
    flat = np.concatenate(dm) * weights
    n = len(flat)
    tol = 1e-12 * max(1.0, abs(delta))
    if n <= _EXACT_FLIPS:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)   # [2^n, n]
        t = signs @ flat
        p = float(np.mean(np.abs(t) >= abs(delta) - tol))
    else:
        t = rng.choice((-1.0, 1.0), size=(int(n_perm), n)) @ flat
        p = float((1 + np.sum(np.abs(t) >= abs(delta) - tol)) / (1 + int(n_perm)))
    return {"delta": 100.0 * delta, "ci": (100.0 * float(lo), 100.0 * float(hi)), "p": min(1.0, p),
            "n_problems": int(n), "n_seeds": int(n_seeds)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control over the comparisons given): the i-th smallest
    p becomes max over j <= i of min(1, (m - j + 1) p_(j)), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()
