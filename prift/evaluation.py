"""Grade kept samples and reduce them to metrics: the file-level glue between generation, grading and tables.

grades  jsonl, one line per sample (per question for multiple choice):
          math  {id, sample, pred, qwen, math_verify, finish_reason}
          code  evalplus {id, sample, base, plus, ...} (prift.codeeval); LiveCodeBench {id, sample, passed, ...}
                (prift.livecodebench)
          mcq   {id, sample=0, gold, pred, correct, logprobs} (prift.mcq)
metrics json, a list of long-format records (one per metric) that `prift tables` reads.
"""
from __future__ import annotations

from pathlib import Path

from prift.data import read_jsonl
from prift.io import write_jsonl


def grade_math_file(samples_path: str | Path, problems: list[dict], out: str | Path) -> dict:
    from prift.grading import grade_math
    gold = {p["id"]: p["gold"] for p in problems}
    rows, disagree = [], 0
    for s in read_jsonl(samples_path):
        if s["id"] not in gold:
            raise ValueError(f"{samples_path}: sample for unknown problem id {s['id']!r}")
        g = grade_math(s["text"], gold[s["id"]])
        disagree += g["qwen"] != g["math_verify"]
        rows.append({"id": s["id"], "sample": s["sample"], "pred": g["pred"], "qwen": g["qwen"],
                     "math_verify": g["math_verify"], "finish_reason": s.get("finish_reason")})
    write_jsonl(out, rows)
    return {"samples": len(rows), "grader_disagreement": disagree / max(len(rows), 1)}


def correctness_matrix(grades: list[dict], verdict: str = "qwen") -> tuple[list[str], list[list[bool]]]:
    """problems × samples, problems in first-seen order, samples by index."""
    by_id: dict[str, dict[int, bool]] = {}
    for g in grades:
        by_id.setdefault(g["id"], {})[int(g["sample"])] = bool(g[verdict])
    ids = list(by_id)
    mat = [[by_id[i][s] for s in sorted(by_id[i])] for i in ids]
    return ids, mat


def math_metrics(grades_path: str | Path, k: int, labels: dict, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Avg@k and Pass@k (percent) with bootstrap 95% intervals over problems; Qwen-style verdict as in the paper,
    plus the same metrics under math-verify and the graders' disagreement rate."""
    from prift.metrics import summarise
    grades = read_jsonl(grades_path)
    records = []
    for verdict, suffix in (("qwen", ""), ("math_verify", ":math_verify")):
        _, mat = correctness_matrix(grades, verdict)
        s = summarise(mat, k, n_boot=n_boot, seed=seed)
        for m in (f"avg@{k}", f"pass@{k}"):
            lo, hi = s[f"{m}_ci"]
            records.append(labels | {"metric": m + suffix, "value": s[m], "ci_low": lo, "ci_high": hi,
                                     "n_problems": s["n_problems"]})
    dis = sum(g["qwen"] != g["math_verify"] for g in grades) / max(len(grades), 1)
    records.append(labels | {"metric": "grader_disagreement", "value": 100 * dis, "ci_low": None, "ci_high": None,
                             "n_problems": records[0]["n_problems"]})
    return records


# ----------------------------------------------------------------------------------------------------------------------
# Code and multiple choice: one boolean verdict per grade line → pass@k (k=1 for the paper's tables)

# {metric name: grade field}. The tables read "pass@1" (Tables 4, 11: evalplus's "plus" verdict, i.e. base and extra
# tests, as evalplus reports HumanEval+ / MBPP+) and "acc" (Tables 2, 9: prift.mcq's per-question correctness).
EVALPLUS_VERDICTS = {"pass@1": "plus", "pass@1:base": "base"}
LCB_VERDICTS = {"pass@1": "passed"}
MCQ_VERDICTS = {"acc": "correct"}


def verdicts_of(bench: dict) -> dict[str, str]:
    """The {metric: grade field} map of a benchmark entry of the config (kind code or mcq)."""
    if bench["kind"] == "mcq":
        return MCQ_VERDICTS
    if bench["kind"] == "code":
        return {"evalplus": EVALPLUS_VERDICTS, "livecodebench": LCB_VERDICTS}[bench["suite"]]
    raise ValueError(f"benchmark kind {bench['kind']!r} has no verdict metrics")


def verdict_metrics(grades_path: str | Path, labels: dict, verdicts: dict[str, str], *, k: int = 1,
                    n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """pass@k (percent; k=1 with one sample per question = accuracy) with a bootstrap 95% interval over problems,
    one record per metric (prift.codeeval.verdict_metrics)."""
    from prift.codeeval import verdict_metrics as _verdict_metrics
    return _verdict_metrics(grades_path, labels, verdicts, k=k, n_boot=n_boot, seed=seed)
