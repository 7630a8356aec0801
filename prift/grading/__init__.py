"""Answer extraction and correctness verdicts for the evaluation benchmarks.

Math: a grader following the *semantics* of the Qwen2.5-Math evaluation harness that the paper's math numbers come
from -- extract the final answer of a chain-of-thought response (:func:`extract_answer`), normalise it
(:func:`normalize_answer`) and decide equivalence with the gold answer (:func:`math_equal`: string equality,
numbers with relative tolerance 1e-4, tuples / intervals / sets / matrices element-wise, equations, sympy; every
comparison bounded by a timeout, exceeding it = not equal).  The implementation is original; only the behaviour is
modelled on the harness.  :func:`math_correct` is that verdict, :func:`math_verify_correct` a second opinion from
the ``math-verify`` library, :func:`gold_answer` the gold answer of a benchmark record (by its record format) as the
harness takes it.

Security: model outputs are untrusted.  LaTeX is parsed with the ANTLR-based ``latex2sympy2_extended`` (no
``eval``); sympy's ``parse_expr`` (which does ``eval``) only sees strings made of numbers, operators, brackets,
single-letter names and whitelisted function names.

Modules: ``answers`` (extraction, normalisation), ``gold`` (gold answers, one reader per record format),
``brackets`` (brace helpers), ``symbolic`` (numeric / sympy equality), ``equal`` (verdicts), ``timeouts`` (time
limits, worker processes), ``mcq`` (multiple-choice prediction). The benchmarks themselves (which records, prompts,
code harnesses) are prift.benchmarks'.
"""

from prift.grading.answers import extract_answer, normalize_answer
from prift.grading.equal import grade_math, math_correct, math_equal, math_verify_correct
from prift.grading.gold import GOLD_FORMATS, gold_answer
from prift.grading.mcq import mcq_prediction
from prift.grading.symbolic import REL_TOL

__all__ = [
    "extract_answer",
    "normalize_answer",
    "math_equal",
    "math_correct",
    "math_verify_correct",
    "gold_answer",
    "grade_math",
    "GOLD_FORMATS",
    "REL_TOL",
    "mcq_prediction",
]
