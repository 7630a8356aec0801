"""prift.startup: what a verb's process sets before its imports. The model verbs start without scikit-learn, which
transformers would import (with SciPy) for a feature prift never uses; the other verbs keep it (lm-eval needs it)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prift import startup

PROBE = """
import json, os, sys
from prift import cli
rc = cli.main([sys.argv[1], "--config", "/nonexistent/config.yaml", *sys.argv[2:]])   # fails after the start
from transformers import AutoModelForCausalLM                                          # noqa: F401
from transformers.utils import is_sklearn_available
print(json.dumps({"rc": rc, "transformers_sees_sklearn": is_sklearn_available(),
                  "sklearn_imported": sys.modules.get("sklearn") is not None,
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
"""
ARGS = {"generate": ["--model", "m", "--benchmark", "b", "--problems", "p", "--out", "o"],
        "sft": ["--domain", "d", "--backbone", "b", "--method", "m", "--data", "x", "--out", "o"],
        "grade": ["--benchmark", "b", "--out", "o"]}


def _start(verb: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    p = subprocess.run([sys.executable, "-c", PROBE, verb, *ARGS[verb]], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("verb", ["generate", "sft"])
def test_a_model_verb_starts_without_scikit_learn(verb):
    assert verb in startup.MODEL_VERBS
    got = _start(verb)
    assert got == {"rc": 2, "transformers_sees_sklearn": False, "sklearn_imported": False, "omp": "1"}, got


def test_other_verbs_keep_scikit_learn():
    assert "grade" not in startup.MODEL_VERBS   # lm-eval (medical benchmarks) imports scikit-learn
    got = _start("grade")
    assert got["rc"] == 2 and got["transformers_sees_sklearn"] is True and got["sklearn_imported"], got


ASKS = re.compile(r"import sklearn|from sklearn|is_sklearn_available")


def _mentions_sklearn(package: str) -> set[str]:
    """The package's files that import scikit-learn or ask whether it is there."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return set()
    root = Path(spec.origin).parent
    return {p.relative_to(root).as_posix() for p in root.rglob("*.py") if ASKS.search(p.read_text(errors="replace"))}


def test_transformers_asks_for_scikit_learn_only_for_what_prift_does_not_use():
    """If an upgrade makes another module of transformers (or TRL, accelerate, datasets) use scikit-learn, this names
    it: check that prift never needs it before adding it here, or drop the model verbs' start without it."""
    assert _mentions_sklearn("transformers") == {
        "generation/candidate_generator.py",   # assisted decoding's confidence threshold (a ROC curve)
        "data/metrics/__init__.py",            # the legacy GLUE / SQuAD metrics
        "utils/import_utils.py", "utils/__init__.py", "file_utils.py", "__init__.py",   # the check itself, exported
    }
    for package in ("trl", "accelerate", "datasets", "peft", "vllm"):
        assert _mentions_sklearn(package) == set(), package
