"""Benchmark kinds: what `prift prepare --benchmark`, `generate`, `grade` and `metrics` do with a benchmark entry.

Every benchmark entry of the config names its kind (`kind:`) and, where the kind's records come in several formats,
the format (`format:`, how a record and its gold answer are read); nothing depends on the benchmark's own name, so a
renamed entry behaves the same. The kinds, in KINDS (prift.benchmarks.registry.register):

  math           prepare {id, problem, gold} (format: math500 | minerva_math | olympiadbench | aime24 | amc23);
                 the Qwen2.5-Math harness's prompt and stops; both math graders; Avg@k, Pass@k   (.math)
  evalplus       HumanEval+ / MBPP+ (format: humaneval | mbpp): evalplus's prompt, stops, evaluation; pass@1  (.code)
  livecodebench  LiveCodeBench release tags (`version`): its prompt, "###", sandboxed tests; pass@1          (.code)
  mcq            MedQA / MMLU-medical / MedMCQA (format: medqa | mmlu | medmcqa): no samples, lm-eval scores the
                 option letters; acc                                                           (.multiple_choice)

The functions below are the verbs' single calls (sampling itself is the generate stage's, prift.generate, which asks
the kind for its prompts and stops).
"""
from __future__ import annotations

import difflib
from pathlib import Path

from prift.benchmarks.registry import KINDS, Kind, correctness_matrix, kind, register, verdict_metrics
from prift.benchmarks import math, code, multiple_choice  # noqa: F401,I001  (they register their kinds, in this order)

__all__ = ["KINDS", "Kind", "kind", "register", "correctness_matrix", "verdict_metrics", "entry", "kind_of",
           "generation_settings", "held_out_problems", "prepare", "grade", "metrics", "correctness"]


def entry(cfg: dict, name: str) -> dict:
    """The config's entry of a benchmark; an unknown name is a ConfigError with a suggestion."""
    if name not in cfg["benchmarks"]:
        from prift.config import ConfigError
        close = difflib.get_close_matches(name, list(cfg["benchmarks"]), n=1)
        raise ConfigError(f"unknown benchmark '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return cfg["benchmarks"][name]


def kind_of(cfg: dict, name: str) -> Kind:
    return kind(entry(cfg, name)["kind"])


def generation_settings(cfg: dict, name: str) -> dict:
    """The global `generation` section with the benchmark's own `generation` merged over it."""
    return {**cfg["generation"], **entry(cfg, name).get("generation", {})}


def held_out_problems(cfg: dict, domain: str) -> set[str]:
    """The problem texts of a domain's benchmarks, held out of its training and RL prompts (Kind.problem_texts)."""
    out = set()
    for b in cfg["domains"][domain]["benchmarks"]:
        out |= kind_of(cfg, b).problem_texts(cfg["benchmarks"][b])
    return out


def prepare(cfg: dict, name: str, out: str | Path, log=print) -> list[dict]:
    """`prift prepare --benchmark`: the benchmark's problems → `out` (jsonl)."""
    from prift.io import write_jsonl
    rows = kind_of(cfg, name).prepare(name, entry(cfg, name), log=log)
    write_jsonl(out, rows)
    log(f"{name}: {len(rows)} problems → {out}")
    return rows


def grade(cfg: dict, name: str, out: str | Path, *, problems: str | Path | None = None,
          samples: str | Path | None = None, model: str | None = None, log=print) -> dict:
    """`prift grade`: the samples of a sampled benchmark against its prepared problems, or (a kind that samples
    nothing) the model itself → the grades file `out`."""
    k, e = kind_of(cfg, name), entry(cfg, name)
    if not k.sampled:
        if not model or samples or problems:
            raise SystemExit(f"benchmark '{name}' (kind {k.name}): give --model (no --problems/--samples): lm-eval "
                             f"scores the option letters of the model")
        s = k.grade(name, e, out, model=model, cfg=cfg, log=log)
    else:
        if model or not (samples and problems):
            raise SystemExit(f"benchmark '{name}' (kind {k.name}): give --problems and --samples (no --model)")
        from prift.data import read_jsonl
        s = k.grade(name, e, out, problems=read_jsonl(problems), samples=samples, cfg=cfg, log=log)
    log(f"graded {name}: {s}")
    return s


def metrics(cfg: dict, run: str, name: str, grades: str | Path, out: str | Path, log=print) -> list[dict]:
    """`prift metrics`: the metrics records of one run (`<domain>/<backbone>/<method>`) on one benchmark → `out`
    (json), labelled with the run, its method and variant (an RL run `<init>+rl` is method <init>, variant "rl")."""
    from prift.config import ORIGINAL, RL_VARIANT, rl_init
    from prift.io import write_json
    from prift.paths import split_run_id
    domain, backbone, method = split_run_id(run)
    k = kind_of(cfg, name)
    # `original` is the backbone itself, the same model whatever the domain: never a variant
    variant = "" if method == ORIGINAL else cfg["domains"][domain].get("variant", "")
    if rl_init(method) is not None:
        method, variant = rl_init(method), RL_VARIANT
    labels = {"run": run, "domain": domain, "backbone": backbone, "method": method, "variant": variant,
              "benchmark": name}
    ev = cfg["evaluation"]
    recs = k.metrics(grades, labels, k=ev.get("k", 16), n_boot=ev.get("n_boot", 1000), seed=cfg["seed"])
    write_json(out, recs)
    log(" ".join(f"{r['metric']}={r['value']:.2f}" for r in recs if ":" not in r["metric"]))
    return recs


def correctness(cfg: dict, name: str, grades: list[dict], metric: str) -> tuple[list[str], list[list[bool]]]:
    """problems × samples of the verdict a metric of the benchmark counts (paired comparisons)."""
    return correctness_matrix(grades, kind_of(cfg, name).verdict(metric))
