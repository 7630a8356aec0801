"""Correctness verdicts: the harness-style :func:`math_equal` / :func:`math_correct` and the ``math-verify`` one.

:func:`_math_equal_impl` dispatches on the shape of the two normalised answers (multiple-choice letters, numbers,
equations, interval unions, matrices, tuples / intervals / sets, lists, ``\\pm``) and falls back to symbolic
equality (:mod:`prift.grading.symbolic`); :func:`math_equal` runs it under a time limit
(:mod:`prift.grading.timeouts`), and :func:`math_correct` / :func:`grade_math` run the whole verdict of a response
-- the answer's extraction included, which model outputs of megabytes make worth bounding -- under one.
"""

from __future__ import annotations

import re

from prift.grading.answers import _normalize, extract_answer, normalize_answer
from prift.grading.brackets import _outer_brackets, _split_top
from prift.grading.symbolic import _num_equal, _symbolic_equal, _to_number
from prift.grading.timeouts import _call_with_timeout, _check_deadline, _Timeout


# =============================================================================
# Structured comparison
# =============================================================================

_MATRIX_RE = re.compile(
    r"\\begin\{(?P<env>[pbvBV]?matrix|smallmatrix|array)\}(?:\{[^{}]*\})?(?P<body>.*)\\end\{(?P=env)\}",
    re.S,
)


def _parse_matrix(s: str) -> list[list[str]] | None:
    m = _MATRIX_RE.fullmatch(s.strip())
    if not m:
        return None
    body = m.group("body").strip()
    rows = [r for r in re.split(r"\\\\", body) if r.strip()]
    return [[c.strip() for c in r.split("&")] for r in rows]


def _match_unordered(ps: list[str], gs: list[str]) -> bool:
    if len(ps) != len(gs):
        return False
    used = [False] * len(gs)

    def rec(i: int) -> bool:
        if i == len(ps):
            return True
        for j, g in enumerate(gs):
            if not used[j] and _math_equal_impl(ps[i], g):
                used[j] = True
                if rec(i + 1):
                    return True
                used[j] = False
        return False

    return rec(0)


def _expand_pm(s: str) -> list[str] | None:
    """``a \\pm b`` -> ``[a+b, a-b]`` (one top-level ``\\pm``)."""
    if s.count("\\pm") != 1:
        return None
    a, b = s.split("\\pm")
    return [f"{a}+{b}", f"{a}-{b}"]


_SIMPLE_LHS_RE = re.compile(r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-zA-Z, ]*\))?|\\[a-zA-Z]+")


def _expand_pm_list(elems: list[str]) -> list[str]:
    return [y for x in elems for y in (_expand_pm(x) or [x])]


def _equation_sides(s: str) -> list[str] | None:
    """``[lhs, rhs]`` of a single top-level equation, else None."""
    if re.search(r"[<>]|\\(?:leq|geq|neq|approx)", s):
        return None
    parts = _split_top(s, "=")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        return None
    return [parts[0].strip(), parts[1].strip()]


def _math_equal_impl(pred: str, gold: str) -> bool:
    """Equivalence of two answers, without a time limit (see :func:`math_equal`)."""
    _check_deadline()
    p = normalize_answer(pred)
    g = normalize_answer(gold)
    if p == g:
        return True
    if not p or not g:
        return False
    # multiple-choice letters
    if re.fullmatch(r"[A-E]", g):
        m = re.fullmatch(r"\(?([A-Ea-e])\)?", p)
        return bool(m) and m.group(1).upper() == g
    percent = "%" in p or "%" in g
    # plain numbers
    pn, gn = _to_number(p), _to_number(g)
    if pn is not None and gn is not None:
        return _num_equal(pn, gn, percent)
    # equations: the forms that keep "x = ..." prefixes
    pk, gk = _normalize(pred, strip_assignment=False), _normalize(gold, strip_assignment=False)
    pq, gq = _equation_sides(pk), _equation_sides(gk)
    if pq is not None and gq is not None:
        if _math_equal_impl(pq[0], gq[0]) and _math_equal_impl(pq[1], gq[1]):
            return True
        pd = f"{pq[0]}-({pq[1]})"
        gd = f"{gq[0]}-({gq[1]})"
        return _symbolic_equal(pd, gd) or _symbolic_equal(pd, f"-({gd})")
    if pq is not None and gq is None and _SIMPLE_LHS_RE.fullmatch(pq[0]) and "," not in g:
        return _math_equal_impl(pq[1], g)
    if gq is not None and pq is None and _SIMPLE_LHS_RE.fullmatch(gq[0]) and "," not in p:
        return _math_equal_impl(p, gq[1])
    # interval unions
    if "\\cup" in p or "\\cup" in g:
        ps, gs = _split_top(p, "\\cup"), _split_top(g, "\\cup")
        if len(ps) != len(gs) or len(ps) == 1:
            return False
        return _match_unordered(ps, gs)
    # matrices (a one-row/one-column matrix also matches a tuple)
    pm, gm = _parse_matrix(p), _parse_matrix(g)
    if pm is not None or gm is not None:
        def rows_of(mat, s):
            if mat is not None:
                return mat
            ob = _outer_brackets(s)
            if ob and ob[0] in "([" and ob[2] in ")]":
                return [[x] for x in _split_top(ob[1])]
            return None

        A, B = rows_of(pm, p), rows_of(gm, g)
        if A is None or B is None:
            return False
        if (pm is None) != (gm is None):  # vector vs tuple: compare flattened
            A = [x for r in A for x in r]
            B = [x for r in B for x in r]
            return len(A) == len(B) and all(_math_equal_impl(x, y) for x, y in zip(A, B))
        if len(A) != len(B) or any(len(r) != len(q) for r, q in zip(A, B)):
            return False
        return all(_math_equal_impl(x, y) for r, q in zip(A, B) for x, y in zip(r, q))
    # bracketed sequences: tuples, intervals (ordered), sets (order-free)
    pb, gb = _outer_brackets(p), _outer_brackets(g)
    if pb is not None and gb is not None:
        pe, ge = _split_top(pb[1]), _split_top(gb[1])
        if len(pe) > 1 or len(ge) > 1 or pb[0] == "{" or gb[0] == "{":
            if pb[0] != gb[0] or pb[2] != gb[2]:  # open vs closed ends, set vs tuple
                return False
            if pb[0] == "{":
                if len(pe) != len(ge):
                    pe, ge = _expand_pm_list(pe), _expand_pm_list(ge)
                return _match_unordered(pe, ge)
            if len(pe) != len(ge):
                return False
            return all(_math_equal_impl(x, y) for x, y in zip(pe, ge))
    # a set against a plain list of values
    for sb, other in ((pb, g), (gb, p)):
        if sb is not None and sb[0] == "{" and (pb is None or gb is None):
            se, oe = _split_top(sb[1]), _split_top(other)
            if len(se) != len(oe):
                se, oe = _expand_pm_list(se), _expand_pm_list(oe)
            return _match_unordered(se, oe)
    # plain comma-separated lists (and "a \pm b"): order does not matter
    pl, gl = _split_top(p), _split_top(g)
    if len(pl) > 1 or len(gl) > 1:
        if pb is not None or gb is not None:
            return False
        if len(pl) != len(gl):
            pl, gl = _expand_pm_list(pl), _expand_pm_list(gl)
        return _match_unordered(pl, gl)
    if "\\pm" in p and "\\pm" in g:
        pp, gp = _expand_pm(p), _expand_pm(g)
        if pp and gp:
            return _match_unordered(pp, gp)
    if (pq is None) != (gq is None):
        return False
    # a tuple / interval / set against a single expression
    if (pb is not None and len(_split_top(pb[1])) > 1) != (gb is not None and len(_split_top(gb[1])) > 1):
        return False
    # symbolic
    return _symbolic_equal(p, g)


def math_equal(pred: str, gold: str, timeout: float = 3.0) -> bool:
    """Whether the answer ``pred`` is equivalent to the gold answer ``gold``.

    Both are normalised (:func:`normalize_answer`) and compared by: string
    equality; numbers with relative tolerance 1e-4, except that two exact
    rationals (integers, fractions of integers, mixed numbers) must be equal
    exactly -- so ``025`` == ``25`` == ``25.0`` but ``9999`` != ``10000``
    and ``448/15625`` != ``448/15626`` (when either side carries
    a ``%`` sign, ``g``, ``g/100`` and ``g*100`` are all accepted, so
    ``50%`` == ``0.5`` == ``50``); element-wise for tuples, intervals (the
    brackets must agree: open vs closed ends matter), sets / plain lists
    (order-free), interval unions and matrices; equations by their
    right-hand sides (``y = 2x+1`` vs ``2x+1``) or by ``lhs - rhs``; and
    symbolically with sympy.  A comparison running longer than ``timeout``
    seconds counts as *not* equal.
    """
    if pred is None or gold is None:
        return False
    try:
        return bool(_call_with_timeout("_math_equal_impl", (str(pred), str(gold)), timeout))
    except _Timeout:
        return False
    except RecursionError:
        return False
    except Exception:  # noqa: BLE001
        return False


def _math_grade_impl(response: str, gold: str, benchmark: str | None) -> tuple[str, bool]:
    """``(extracted answer, verdict)`` of a response, without a time limit (see :func:`math_correct`)."""
    pred = extract_answer(response, benchmark)
    return pred, bool(_math_equal_impl(pred, gold))


def _math_grade(response: str, gold: str, benchmark: str | None, timeout: float) -> tuple[str, bool]:
    """The harness-style verdict with extraction *and* comparison under one time limit; past it (or on an error)
    the verdict is ``("", False)``."""
    if response is None or gold is None:
        return "", False
    try:
        pred, ok = _call_with_timeout("_math_grade_impl", (str(response), str(gold), benchmark), timeout)
        return pred, bool(ok)
    except (_Timeout, RecursionError):
        return "", False
    except Exception:  # noqa: BLE001
        return "", False


def math_correct(response: str, gold: str, benchmark: str | None = None, timeout: float = 3.0) -> bool:
    """The harness-style verdict: ``math_equal(extract_answer(response), gold)``, the extraction and the comparison
    together bounded by ``timeout`` seconds (past it: not correct)."""
    return _math_grade(response, gold, benchmark, timeout)[1]


# =============================================================================
# math-verify
# =============================================================================

def _math_verify_impl(response: str, gold: str, use_alarm_timeout: int | None) -> bool:
    from math_verify import parse, verify

    g = str(gold).strip()
    gold_texts = [g] if ("\\boxed" in g or "$" in g) else [f"${g}$", f"\\boxed{{{g}}}"]
    gp = None
    for gt in gold_texts:
        gp = parse(gt, parsing_timeout=use_alarm_timeout)
        if gp:
            break
    if not gp:
        return False
    pp = parse(str(response), parsing_timeout=use_alarm_timeout)
    if not pp:
        return False
    return bool(verify(gp, pp, timeout_seconds=use_alarm_timeout))


def math_verify_correct(response: str, gold: str, timeout: float = 5.0) -> bool:
    """The verdict of the ``math-verify`` library (exceptions / timeouts -> False).

    The whole verdict (parsing the response and the gold, comparing them) is bounded by ``timeout`` seconds, with
    the same mechanism as :func:`math_equal` (an interval timer in the main thread, else a killable worker process);
    math-verify's own per-step alarms are turned off so that they cannot clobber that timer.
    """
    if response is None or gold is None:
        return False
    try:
        return bool(_call_with_timeout("_math_verify_impl", (str(response), str(gold), None), timeout))
    except (_Timeout, RecursionError):
        return False
    except Exception:  # noqa: BLE001
        return False


def grade_math(response: str, gold: str, benchmark: str | None = None, timeout: float = 3.0) -> dict:
    """Both verdicts and the extracted answer: ``{"qwen", "math_verify", "pred"}``. Each verdict -- extraction
    included -- runs under its own time limit (``timeout`` for the harness-style one, math-verify's 5 s); a verdict
    past its limit is False (and ``pred`` is then "")."""
    pred, ok = _math_grade(response, gold, benchmark, timeout)
    return {
        "qwen": ok,
        "math_verify": math_verify_correct(response, gold),
        "pred": pred,
    }
