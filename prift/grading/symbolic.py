"""Numeric and symbolic equality of two normalised answers.

Plain numbers are compared with relative tolerance :data:`REL_TOL` (two exact rationals exactly); other
expressions are parsed into sympy and compared structurally, numerically and by ``simplify``.

Security: model outputs are untrusted.  LaTeX is parsed with the ANTLR-based ``latex2sympy2_extended`` (no
``eval``); sympy's ``parse_expr`` (which does ``eval``) is only used on strings made of numbers, operators,
brackets, single-letter names and a whitelist of function names (:func:`_safe_for_parse_expr`).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from prift.grading.timeouts import _check_deadline, _Timeout

# Relative tolerance of numeric comparisons (the harness's value).
REL_TOL = 1e-4


# =============================================================================
# Numbers
# =============================================================================

_PLAIN_NUM_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _to_number(s: str) -> Fraction | float | None:
    """Parse a normalised answer that is a plain number (percent sign ignored).

    Exact rational forms -- integers, ``\\frac{a}{b}`` and ``a/b`` of integers,
    mixed numbers ``1\\frac{4}{5}`` -- give a :class:`Fraction`; decimals,
    ``4.5e33``, ``a\\times10^{b}`` and ``10^{b}`` give a float.
    """
    t = s.replace("%", "").strip()
    if not t:
        return None
    if re.fullmatch(r"[-+]?\d+", t):
        return Fraction(int(t))
    if _PLAIN_NUM_RE.fullmatch(t):
        try:
            return float(t)
        except (ValueError, OverflowError):
            return None
    neg = t[0] == "-"
    if t[0] in "+-":
        t = t[1:]
    sign = -1 if neg else 1
    num = r"(\d+(?:\.\d*)?|\.\d+)"
    try:
        m = re.fullmatch(num + r"(?:\\times|\\cdot|\*)10\^\{?([-+]?\d+)\}?", t)
        if m:
            return sign * float(m.group(1)) * 10.0 ** int(m.group(2))
        m = re.fullmatch(r"10\^\{?([-+]?\d+)\}?", t)
        if m:
            return sign * 10.0 ** int(m.group(1))
        m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", t) or re.fullmatch(r"(\d+)/(\d+)", t)
        if m:
            d = int(m.group(2))
            return None if d == 0 else sign * Fraction(int(m.group(1)), d)
        m = re.fullmatch(r"(\d+)\\frac\{(\d+)\}\{(\d+)\}", t)  # mixed number
        if m and int(m.group(3)) != 0 and int(m.group(2)) < int(m.group(3)):
            return sign * (int(m.group(1)) + Fraction(int(m.group(2)), int(m.group(3))))
        m = re.fullmatch(r"\\frac\{([-+]?" + num[1:-1] + r")\}\{([-+]?" + num[1:-1] + r")\}", t) or \
            re.fullmatch(num + r"/" + num, t)
        if m:
            d = float(m.group(2))
            return None if d == 0 else sign * float(m.group(1)) / d
    except (ValueError, OverflowError):
        return None
    return None


def _close(a: Any, b: Any) -> bool:
    """Relative tolerance REL_TOL, except two exact rationals compare exactly."""
    try:
        if a == b:
            return True
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return False
        fa, fb = abs(a), abs(b)
        if not (math.isfinite(fa) and math.isfinite(fb)):  # inf / nan: only a == b
            return False
        return abs(a - b) <= REL_TOL * max(fa, fb)
    except (TypeError, OverflowError, ValueError):
        return False


def _num_equal(p: float, g: float, percent: bool) -> bool:
    """Relative-tolerance equality; with ``percent`` also g/100 and g*100."""
    cands = [g, g / 100, g * 100] if percent else [g]
    return any(_close(p, c) for c in cands)


# =============================================================================
# Symbolic comparison
# =============================================================================

_SAFE_FUNCS = {
    "sqrt", "pi", "exp", "log", "ln", "sin", "cos", "tan", "cot", "sec", "csc",
    "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "E", "I", "oo", "e", "i", "abs", "Abs", "factorial", "binomial", "floor", "ceiling",
}


def _looks_plain_text_math(s: str) -> bool:
    if "\\" in s or "{" in s or "}" in s:
        return False
    return bool(re.search(r"\*|sqrt\(|\bpi\b|exp\(|log\(|ln\(|sin\(|cos\(|tan\(", s))


def _safe_for_parse_expr(s: str) -> bool:
    if not re.fullmatch(r"[\w\s.+\-*/^(),]*", s) or "__" in s or len(s) > 500:
        return False
    if re.search(r"\.(?!\d)", s):  # attribute access
        return False
    for name in re.findall(r"[A-Za-z_]\w*", s):
        if len(name) > 1 and name not in _SAFE_FUNCS:
            return False
    return True


def _parse_text_expr(s: str):
    if not _safe_for_parse_expr(s):
        return None
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    s2 = re.sub(r"\barcsin\b", "asin", s)
    s2 = re.sub(r"\barccos\b", "acos", s2)
    s2 = re.sub(r"\barctan\b", "atan", s2)
    s2 = re.sub(r"\bln\b", "log", s2)
    tr = standard_transformations + (implicit_multiplication_application, convert_xor)
    try:
        return parse_expr(s2, transformations=tr, evaluate=True)
    except Exception:  # noqa: BLE001
        return None


_L2S_CONF = None


def _parse_latex_expr(s: str):
    global _L2S_CONF
    from latex2sympy2_extended import latex2sympy

    if _L2S_CONF is None:
        from latex2sympy2_extended.latex2sympy2 import ConversionConfig

        _L2S_CONF = ConversionConfig(
            interpret_as_mixed_fractions=True,
            interpret_simple_eq_as_assignment=False,
            interpret_contains_as_eq=True,
            lowercase_symbols=False,
        )
    t = s.replace("%", "\\%") if "%" in s and "\\%" not in s else s
    try:
        return latex2sympy(t, conversion_config=_L2S_CONF)
    except Exception:  # noqa: BLE001
        return None


# exponents that would make sympy build astronomically large integers
# (checked before parsing: a single C-level bigint operation cannot be interrupted
# by the in-process timer)
_HUGE_POWER_RE = re.compile(r"\^\s*\{?\s*[-+]?\d{6,}|\^\s*\{[^{}]*\^|\^\s*\d\s*\^|\d{5,}\s*!")


def _parse_expr_any(s: str):
    """Parse a normalised answer into sympy (LaTeX first unless it looks like
    plain-text math such as ``2*sqrt(3)``)."""
    if not s or len(s) > 1000 or _HUGE_POWER_RE.search(s):
        return None
    order = (_parse_text_expr, _parse_latex_expr) if _looks_plain_text_math(s) else (
        _parse_latex_expr, _parse_text_expr)
    for f in order:
        _check_deadline()
        e = f(s)
        if e is not None:
            return e
    return None


def _finite(z: complex) -> bool:
    return math.isfinite(z.real) and math.isfinite(z.imag)


def _numerically_different(a, b, trials: int = 3) -> bool:
    """True when ``a`` and ``b`` clearly differ at a random point of their
    free symbols (a fast exit before ``simplify``); False when undecided."""
    import random

    import sympy

    syms = sorted(a.free_symbols | b.free_symbols, key=str)
    if not syms or len(syms) > 12:
        return False
    rng = random.Random(20240531)
    for _ in range(trials):
        _check_deadline()
        pt = {x: sympy.Float(round(rng.uniform(0.3, 2.7), 6)) for x in syms}
        try:
            va = complex(a.evalf(20, subs=pt))
            vb = complex(b.evalf(20, subs=pt))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError):
            return False
        if _finite(va) and _finite(vb) and not _close(va, vb):
            return True
    return False


def _sympy_equal(a, b, percent: bool = False) -> bool:
    """Equality of two sympy objects: structural, simplify(a-b)==0, numeric."""
    import sympy

    _check_deadline()
    try:
        if a == b:
            return True
    except Exception:  # noqa: BLE001
        pass
    # relations: compare lhs - rhs (up to sign)
    if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
        return _sympy_equal(a.lhs - a.rhs, b.lhs - b.rhs) or _sympy_equal(a.lhs - a.rhs, b.rhs - b.lhs)
    if isinstance(a, sympy.Equality) or isinstance(b, sympy.Equality):
        return False
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        try:
            if a.shape != b.shape:
                return False
            return all(_sympy_equal(x, y) for x, y in zip(a, b))
        except Exception:  # noqa: BLE001
            return False
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        try:
            return bool(a == b) or bool(sympy.simplify(a) == sympy.simplify(b))
        except Exception:  # noqa: BLE001
            return False
    # numeric evaluation: constants directly, expressions at random points
    try:
        if not a.free_symbols and not b.free_symbols:
            va, vb = complex(sympy.N(a, 30)), complex(sympy.N(b, 30))
            if percent:
                return any(_close(va, c) for c in (vb, vb / 100, vb * 100))
            if _close(va, vb):
                return True
            if _finite(va) and _finite(vb):
                return False
        elif _numerically_different(a, b):
            return False
    except _Timeout:
        raise
    except Exception:  # noqa: BLE001
        pass
    _check_deadline()
    try:
        d = sympy.simplify(a - b)
        if d == 0:
            return True
    except Exception:  # noqa: BLE001
        pass
    _check_deadline()
    try:
        if a.equals(b) is True:
            return True
    except Exception:  # noqa: BLE001
        pass
    return False


def _symbolic_equal(p: str, g: str) -> bool:
    a = _parse_expr_any(p)
    if a is None:
        return False
    b = _parse_expr_any(g)
    if b is None:
        return False
    return _sympy_equal(a, b, percent=("%" in p or "%" in g))
