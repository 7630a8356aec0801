"""The registry of benchmark kinds and what every kind shares: one boolean verdict per grade line → pass@k.

A kind is a class registered under its name (the `kind:` of a benchmark entry of the config) with its metadata
beside its functions:

    @register
    class LiveCodeBench(Kind):
        name = "livecodebench"
        reads = ("version", "timeout")      # entry keys only this kind reads
        verdicts = {"pass@1": "passed"}     # {metric: grade field}
        def prepare(self, name, entry, log=print): ...

`formats` are the values of the entry's `format:` (how the kind reads its records; a kind with one record format has
none); `sampled` says whether `prift generate` samples the benchmark (math, code) or `prift grade` scores the model
itself (multiple choice). The config's schema lists the same kinds, formats and keys (tests/test_benchmarks.py).
"""
from __future__ import annotations

import difflib
from pathlib import Path

KINDS: dict[str, "Kind"] = {}


class Kind:
    """What the verbs do with a benchmark entry of one kind (the methods a kind does not support raise)."""
    name: str = ""
    formats: tuple[str, ...] = ()     # the values of the entry's `format:`; () = one record format, no `format:`
    reads: tuple[str, ...] = ()       # entry keys only this kind reads (besides label, kind, format, data, generation)
    sampled: bool = True              # generate → grade the samples; False: grade scores the model (no samples)
    verdicts: dict[str, str] = {}     # {metric: the grade field it counts}, for kinds with one verdict per line

    def prepare(self, name: str, entry: dict, log=print) -> list[dict]:
        """The benchmark's problems, as `prift prepare --benchmark` writes them (one dict per problem)."""
        raise NotImplementedError

    def problem_texts(self, entry: dict) -> set[str]:
        """The problem texts a domain's training and RL prompts must not contain (none unless a kind says so)."""
        return set()

    def prompts(self, tokenizer, problems: list[dict], *, chat: bool = True, prompt: str = "harness") -> list[str]:
        """The generation prompt of every problem (a string, chat template applied where the harness does)."""
        raise NotImplementedError(f"benchmark kind '{self.name}' is not sampled")

    def stops(self, tokenizer, *, chat: bool = True, fmt: str | None = None, stop: list[str] | None = None,
              stop_token_ids: list[int] | str = "auto") -> tuple[list[str], list[int]]:
        """(stop strings, stop token ids) of the kind's harness; the backends add the model's end-of-sequence ids."""
        raise NotImplementedError(f"benchmark kind '{self.name}' is not sampled")

    def sample_fields(self, tokenizer, chat: bool = True) -> dict:
        """Fields added to every sample line (what the grader needs to know of how the samples were made)."""
        return {}

    def grade(self, name: str, entry: dict, out: str | Path, *, problems: list[dict] | None = None,
              samples: str | Path | None = None, model: str | None = None, cfg: dict | None = None,
              log=print) -> dict:
        """Write the grades file (one line per sample; per question for a kind that samples nothing); returns a
        summary for the log."""
        raise NotImplementedError

    def metrics(self, grades: str | Path, labels: dict, *, k: int, n_boot: int = 1000, seed: int = 0) -> list[dict]:
        """The metrics records of a grades file (`labels` + metric, value, ci_low, ci_high, n_problems): pass@1 of
        each verdict (k = 1: the paper's code and multiple-choice tables sample once; `k` is the math kind's)."""
        return verdict_metrics(grades, labels, self.verdicts, k=1, n_boot=n_boot, seed=seed)

    def verdict(self, metric: str) -> str:
        """The grade field a metric counts (per-problem comparisons read it)."""
        if metric not in self.verdicts:
            raise KeyError(f"benchmark kind '{self.name}' has no metric {metric!r}; it has {sorted(self.verdicts)}")
        return self.verdicts[metric]


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: an instance of the kind in KINDS under its name; a name is registered only once."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a benchmark kind needs a name")
    if cls.name in KINDS:
        raise ValueError(f"benchmark kind {cls.name!r} is already registered")
    KINDS[cls.name] = cls()
    return cls


def kind(name: str) -> Kind:
    """The registered kind of this name; an unknown name raises KeyError with the registry and a suggestion."""
    if name not in KINDS:
        close = difflib.get_close_matches(str(name), KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown benchmark kind {name!r}; known: {', '.join(KINDS)}{hint}")
    return KINDS[name]


def data_path(name: str, entry: dict) -> str:
    """The local file (or directory) of a benchmark whose harness reads files itself (evalplus, lm-eval)."""
    if not entry["data"].get("path"):
        from prift.config import ConfigError
        raise ConfigError(f"config key 'benchmarks.{name}.data.path': {entry['kind']} benchmarks are read from a "
                          f"local file (give `path`)")
    return entry["data"]["path"]


# ----------------------------------------------------------------------------------------------------------------------
# Verdicts → metrics

def correctness_matrix(grades: list[dict], verdict: str = "qwen") -> tuple[list[str], list[list[bool]]]:
    """problems × samples of one verdict field, problems in first-seen order, samples by index."""
    by_id: dict[str, dict[int, bool]] = {}
    for g in grades:
        by_id.setdefault(g["id"], {})[int(g["sample"])] = bool(g[verdict])
    ids = list(by_id)
    mat = [[by_id[i][s] for s in sorted(by_id[i])] for i in ids]
    return ids, mat


def verdict_metrics(grades_path: str | Path, labels: dict, verdicts: dict[str, str], *, k: int = 1,
                    n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """pass@k (percent, unbiased estimator over the samples of each problem; k = 1 with one sample per question =
    accuracy) with a bootstrap 95% interval over problems, one record per ``{metric name: grade field}`` (e.g.
    ``{"pass@1": "plus", "pass@1:base": "base"}``)."""
    from prift.data import read_jsonl
    from prift.metrics import summarise
    grades = read_jsonl(grades_path)
    records = []
    for metric, field in verdicts.items():
        by_id: dict[str, dict[int, bool]] = {}
        for g in grades:
            by_id.setdefault(g["id"], {})[int(g.get("sample", 0))] = bool(g[field])
        mat = [[row[s] for s in sorted(row)] for row in by_id.values()]
        s = summarise(mat, k, n_boot=n_boot, seed=seed)
        lo, hi = s[f"pass@{k}_ci"]
        records.append(labels | {"metric": metric, "value": s[f"pass@{k}"], "ci_low": lo, "ci_high": hi,
                                 "n_problems": s["n_problems"]})
    return records
