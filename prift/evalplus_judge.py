"""Evalplus's comparison of a program's output with the expected one, run by the grader on plain data.

:class:`EvalplusJudge` is the body of the test loop of ``evalplus.eval.unsafe_execute`` (evalplus 0.3.1), moved out
of the process that runs the program: exact equality; MBPP+'s special oracles (``are_equivalent`` always passes,
``sum_div`` accepts 0, ``surface_Area`` and ``digit_distance_nums`` against their reference functions, set equality
for the tasks of ``MBPP_OUTPUT_SET_EQ_TASKS``, "is not None" for ``MBPP_OUTPUT_NOT_NONE_TASKS``); HumanEval+'s
``find_zero`` oracle, which ``continue``s before recording the test as passed, so that every ``find_zero``
solution fails, as in evalplus (its known bug, kept); then, when not exactly equal and a tolerance applies (the
problem's ``atol``, or 1e-6 once an expected output is a float or a list / tuple of floats -- evalplus sets it for
the rest of the inputs), same type, same length and ``np.allclose(out, exp, rtol=1e-07, atol=atol)``.

The outputs it judges come from :mod:`prift.sandbox.plain`, so they are built from trusted types only: no
comparison here can run the program's code. The reference functions, task lists and ``is_floats`` are evalplus's
own. Set equality first checks the hashes' spread (:func:`prift.sandbox.plain.hash_spread_ok`), so that a list of
colliding values cannot make the grader quadratic.
"""
from __future__ import annotations

import numpy as np
from evalplus.eval import is_floats
from evalplus.eval._special_oracle import (MBPP_OUTPUT_NOT_NONE_TASKS, MBPP_OUTPUT_SET_EQ_TASKS,
                                           _digit_distance_nums, _poly, _surface_Area)

from prift.sandbox.plain import hash_spread_ok


class EvalplusJudge:
    """``judge(i, out) -> bool``: whether output ``i`` passes test ``i`` (called in input order; keeps evalplus's
    running ``atol``)."""

    def __init__(self, dataset: str, entry_point: str, atol: float, inputs: list, expected: list):
        if dataset not in ("humaneval", "mbpp"):
            raise ValueError(f"evalplus dataset must be 'humaneval' or 'mbpp', got {dataset!r}")
        if len(inputs) != len(expected):
            raise ValueError(f"{len(inputs)} inputs but {len(expected)} expected outputs")
        self.dataset, self.entry_point, self.atol = dataset, entry_point, atol
        self.inputs, self.expected = inputs, expected

    def _exact(self, inp, out, exp):
        """evalplus's ``exact_match``, special oracles included (may be a numpy array, as in evalplus)."""
        exact_match = out == exp
        if self.dataset == "mbpp":
            ep = self.entry_point
            if ep == "are_equivalent":                      # Mbpp/164
                exact_match = exact_match or True
            elif ep == "sum_div":                           # Mbpp/295
                exact_match = exact_match or out == 0
            elif ep == "surface_Area":                      # Mbpp/581
                exact_match = exact_match or abs(out - _surface_Area(*inp)) <= self.atol
            elif ep == "digit_distance_nums":               # Mbpp/558
                exact_match = exact_match or out == _digit_distance_nums(*inp)
            elif ep in MBPP_OUTPUT_SET_EQ_TASKS:
                if not hash_spread_ok(out):
                    return False
                exact_match = set(out) == set(exp)
            elif ep in MBPP_OUTPUT_NOT_NONE_TASKS:          # exp is True if not None, False if None
                exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
        return exact_match

    def _special(self) -> bool:
        ep = self.entry_point
        if self.dataset == "humaneval":
            return ep == "find_zero"
        return ep in ("are_equivalent", "sum_div", "surface_Area", "digit_distance_nums") \
            or ep in MBPP_OUTPUT_SET_EQ_TASKS or ep in MBPP_OUTPUT_NOT_NONE_TASKS

    def chunked(self, i: int, kind: str, n: int):
        """A judge of output ``i``, a ``kind`` ('list' / 'tuple') of ``n`` items arriving in chunks, or None where a
        special oracle needs the whole output (see :func:`prift.sandbox.run_calls`)."""
        if self._special():
            return None
        exp = self.expected[i]
        if self.atol == 0 and is_floats(exp):
            self.atol = 1e-6
        return _ChunkJudge(exp, {"list": list, "tuple": tuple}[kind], n, self.atol)

    def __call__(self, i: int, out) -> bool:
        inp, exp = self.inputs[i], self.expected[i]
        try:
            exact_match = self._exact(inp, out, exp)
            if self.dataset == "humaneval" and self.entry_point == "find_zero":
                assert abs(_poly(*inp, out)) <= self.atol
                return False   # evalplus `continue`s here: the test is never recorded as passed
            if self.atol == 0 and is_floats(exp):
                self.atol = 1e-6                            # enforced for float comparison (and what follows)
            if not exact_match and self.atol != 0:
                if type(out) != type(exp):                  # noqa: E721 - evalplus's check, kept as written
                    return False
                if isinstance(exp, (list, tuple)) and len(out) != len(exp):
                    return False
                return bool(np.allclose(out, exp, rtol=1e-07, atol=self.atol))
            return bool(exact_match)
        except Exception:   # noqa: BLE001 - evalplus: any exception in the check fails the test
            return False


class _ChunkJudge:
    """evalplus's check of a long list / tuple, item by item: ``out == exp`` is equality of the type, the length
    and every item, and the tolerance check (``np.allclose`` of equal-length sequences) holds item by item along the
    first axis, so both can be decided chunk by chunk without holding the whole output."""

    def __init__(self, exp, kind: type, n: int, atol: float):
        self.exp, self.kind, self.n, self.atol, self.got = exp, kind, n, atol, 0
        self.same_shape = type(exp) is kind and len(exp) == n     # exact match and the tolerance check need it
        self.exact = self.same_shape
        self.close = self.same_shape and atol != 0

    def add(self, items: list) -> bool:
        """Judge the next chunk; False once the output cannot pass any more."""
        part = self.exp[self.got:self.got + len(items)]
        self.got += len(items)
        if not self.same_shape:
            return False
        if self.exact and items == list(part):
            return True
        self.exact = False
        if self.close:
            try:
                self.close = bool(np.allclose(self.kind(items), part, rtol=1e-07, atol=self.atol))
            except Exception:   # noqa: BLE001 - evalplus: an exception in the check fails the test
                self.close = False
        return self.close

    def verdict(self) -> bool:
        return self.got == self.n and (self.exact or self.close)
