"""The math benchmarks and the gold answer of a benchmark record, taken the way the harness takes it."""

from __future__ import annotations

import math
from typing import Any

from prift.grading.answers import _last_boxed

MATH_BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")


_BENCH_ALIASES = {
    "math_oai": "math500",
    "math": "math500",
    "math500": "math500",
    "minerva": "minerva_math",
    "minerva_math": "minerva_math",
    "olympiadbench": "olympiadbench",
    "olympiad_bench": "olympiadbench",
    "aime24": "aime",
    "aime25": "aime",
    "aime": "aime",
    "amc23": "amc",
    "amc": "amc",
}


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


def gold_answer(record: dict, benchmark: str) -> str:
    """Gold answer string of a benchmark record (the harness's choice of field).

    * math500 / math_oai: ``answer`` if present, else the last ``\\boxed{}`` of ``solution``;
    * minerva_math: the last ``\\boxed{}`` of ``solution``;
    * olympiadbench: ``final_answer[0]`` with its ``$`` delimiters removed
      (multi-part answers ``$a$,$b$`` become ``a,b``);
    * aime24: the ``answer`` field as a string (leading zeros kept);
    * amc23: the ``answer`` float rendered as an integer when integral.
    """
    key = _BENCH_ALIASES.get(str(benchmark).lower(), str(benchmark).lower())
    if key == "math500":
        ans = record.get("answer")
        if ans is not None and str(ans).strip():
            return str(ans).strip()
        box = _last_boxed(record.get("solution", "") or "")
        return (box or "").strip()
    if key == "minerva_math":
        box = _last_boxed(record.get("solution", "") or "")
        if box is None:
            raise ValueError("minerva_math record has no \\boxed{} answer in its solution")
        return box.strip()
    if key == "olympiadbench":
        fa = record.get("final_answer")
        if isinstance(fa, (list, tuple)):
            if not fa:
                raise ValueError("olympiadbench record has an empty final_answer")
            fa = fa[0]
        s = str(fa).strip().replace("\\$", "\\dollarsign")
        s = s.replace("$", "").replace("\\dollarsign", "\\$")
        return s.strip()
    if key in ("aime", "amc"):
        ans = record.get("answer")
        if ans is None:
            raise ValueError(f"{benchmark} record has no answer field")
        return _render_number(ans)
    # generic fallback
    for k in ("answer", "gt", "final_answer"):
        if record.get(k) not in (None, ""):
            v = record[k]
            if isinstance(v, (list, tuple)):
                v = v[0] if v else ""
            return _render_number(v)
    box = _last_boxed(record.get("solution", "") or "")
    if box is None:
        raise ValueError(f"cannot find a gold answer for benchmark {benchmark!r}")
    return box.strip()
