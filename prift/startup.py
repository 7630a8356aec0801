"""What a verb's process sets before it imports anything heavy (prift.cli.main, first thing after the arguments)."""
from __future__ import annotations

import os
import sys

# The verbs that load a model (transformers, TRL, vLLM) and never use scikit-learn (the medical benchmarks' lm-eval,
# in `grade`, does).
MODEL_VERBS = frozenset({"build-backbone", "score", "sft", "rl", "generate"})


def prepare(verb: str) -> None:
    # One OpenMP/BLAS thread per process unless told otherwise (before torch is imported): Snakemake runs `--cores`
    # jobs side by side, and oversubscribed threads make the small CPU models ~10x slower. GPU jobs are unaffected;
    # set OMP_NUM_THREADS to use more threads for a single CPU job.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if verb in MODEL_VERBS:
        # transformers imports scikit-learn (and SciPy with it) whenever it is installed, only for assisted
        # decoding's confidence threshold (transformers.generation.candidate_generator), which prift never uses:
        # about 1 s of the ~5.5 s of imports that start each model job on the 2-core CI machine (the demo runs 43).
        # A None entry in sys.modules is Python's own "not importable": importlib.util.find_spec, which transformers
        # asks, answers None. tests/test_startup.py checks that transformers asks nowhere else.
        sys.modules.setdefault("sklearn", None)
