"""Multiple-choice prediction from per-letter log-probabilities.

The medical benchmarks (MedQA / MMLU-medical / MedMCQA) run as lm-eval tasks in prift.mcq (prift/tasks/*.yaml).
"""

from __future__ import annotations


def mcq_prediction(logprobs: list[float], letters: str = "ABCD") -> str:
    """The letter with the highest log-probability (the first one on ties, as numpy's argmax in lm-eval)."""
    best = max(range(len(logprobs)), key=lambda i: (logprobs[i], -i))
    return letters[best]
