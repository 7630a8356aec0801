"""The gold answer of a math benchmark record, taken the way the harness takes it: one reader per record format (the
`format:` of a math benchmark entry, prift.benchmarks), whatever the benchmark is called."""

from __future__ import annotations

import math
from typing import Any, Callable

from prift.grading.answers import _last_boxed

GOLD_FORMATS: dict[str, Callable[[dict], str]] = {}


def _reader(fmt: str):
    def decorator(fn: Callable[[dict], str]) -> Callable[[dict], str]:
        if fmt in GOLD_FORMATS:
            raise ValueError(f"math record format {fmt!r} is already registered")
        GOLD_FORMATS[fmt] = fn
        return fn
    return decorator


def _render_number(x: Any) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isfinite(x) and x == int(x):
            return str(int(x))
        return repr(x)
    return str(x).strip()


@_reader("math500")
def _math500(record: dict) -> str:
    """``answer`` if present, else the last ``\\boxed{}`` of ``solution``."""
    ans = record.get("answer")
    if ans is not None and str(ans).strip():
        return str(ans).strip()
    box = _last_boxed(record.get("solution", "") or "")
    return (box or "").strip()


@_reader("minerva_math")
def _minerva_math(record: dict) -> str:
    """The last ``\\boxed{}`` of ``solution``."""
    box = _last_boxed(record.get("solution", "") or "")
    if box is None:
        raise ValueError("minerva_math record has no \\boxed{} answer in its solution")
    return box.strip()


@_reader("olympiadbench")
def _olympiadbench(record: dict) -> str:
    """``final_answer[0]`` with its ``$`` delimiters removed (multi-part answers ``$a$,$b$`` become ``a,b``)."""
    fa = record.get("final_answer")
    if isinstance(fa, (list, tuple)):
        if not fa:
            raise ValueError("olympiadbench record has an empty final_answer")
        fa = fa[0]
    s = str(fa).strip().replace("\\$", "\\dollarsign")
    s = s.replace("$", "").replace("\\dollarsign", "\\$")
    return s.strip()


def _answer(record: dict, fmt: str) -> str:
    ans = record.get("answer")
    if ans is None:
        raise ValueError(f"{fmt} record has no answer field")
    return _render_number(ans)


@_reader("aime24")
def _aime24(record: dict) -> str:
    """The ``answer`` field as a string (leading zeros kept)."""
    return _answer(record, "aime24")


@_reader("amc23")
def _amc23(record: dict) -> str:
    """The ``answer`` float rendered as an integer when integral."""
    return _answer(record, "amc23")


def gold_answer(record: dict, fmt: str) -> str:
    """Gold answer string of a benchmark record of record format `fmt` (GOLD_FORMATS: the harness's choice of
    field)."""
    if fmt not in GOLD_FORMATS:
        raise ValueError(f"unknown math record format {fmt!r}; known: {', '.join(GOLD_FORMATS)}")
    return GOLD_FORMATS[fmt](record)
