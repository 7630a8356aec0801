"""Math benchmarks (MATH-500, Minerva Math, OlympiadBench, AIME24, AMC23) as the Qwen2.5-Math harness runs them.

problems  {id, problem, gold}: the problem text (an OlympiadBench `context` paragraph before it) and the gold answer
          read by the entry's `format:` (prift.grading.gold: one reader per record format)
prompt    the harness's fixed "qwen-boxed" ChatML string for every backbone (prompt "harness"), or the backbone's own
          chat template with the same messages (prompt "template"); stops: the harness's stop strings and the ids of
          those that are single tokens
grades    {id, sample, pred, qwen, math_verify, finish_reason}: both graders' verdicts (prift.grading.grade_math)
metrics   Avg@k and Pass@k under the harness-style verdict (the paper's) and under math-verify, the graders'
          disagreement rate
"""
from __future__ import annotations

from pathlib import Path

from prift.benchmarks.registry import Kind, correctness_matrix, register

# The Qwen2.5-Math harness (math_eval.py): stop strings of every vLLM call; their single-token ids are its stop ids.
HARNESS_STOP = ("</s>", "<|im_end|>", "<|endoftext|>")


def problem(rec: dict, fmt: str, idx: int, name: str | None = None) -> dict:
    """Normalise one record of a math benchmark file of record format `fmt`: the problem text and the gold answer as
    the authors' harness takes them (prift.grading.gold_answer). A record without a gold answer is refused: every
    sample would be graded against an empty answer. `name`: the benchmark, for messages (default: the format)."""
    from prift.grading import gold_answer
    name = name or fmt
    text = rec.get("problem") or rec.get("question")
    if text is None:
        raise ValueError(f"{name} record {idx}: no 'problem' or 'question' field")
    if rec.get("context"):  # olympiadbench records may carry a context paragraph
        text = rec["context"] + "\n" + text
    pid = rec.get("unique_id", rec.get("id", rec.get("idx", idx)))
    try:
        gold = gold_answer(rec, fmt)
    except ValueError as e:
        raise ValueError(f"{name} record {idx}: {e}") from None
    if not gold.strip():
        raise ValueError(f"{name} record {idx} (id {str(pid)!r}): no gold answer (its answer field is empty or "
                         f"missing and no \\boxed{{}} answer is in its solution)")
    return {"id": str(pid), "problem": text, "gold": gold}


def single_token_ids(tokenizer, strings) -> list[int]:
    """The ids of those strings that the vocabulary holds as one token (<|im_end|> → 151645 for Qwen)."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[s] for s in strings if s in vocab})


def grade_file(samples_path: str | Path, problems: list[dict], out: str | Path) -> dict:
    """Both verdicts of every sample against its problem's gold answer → the grades file."""
    from prift.data import read_jsonl
    from prift.grading import grade_math
    from prift.io import write_jsonl
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


def avg_pass_metrics(grades_path: str | Path, k: int, labels: dict, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Avg@k and Pass@k (percent) with bootstrap 95% intervals over problems; Qwen-style verdict as in the paper,
    plus the same metrics under math-verify and the graders' disagreement rate."""
    from prift.data import read_jsonl
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


@register
class Math(Kind):
    name = "math"
    formats = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")   # = prift.grading.GOLD_FORMATS

    def prepare(self, name, entry, log=print):
        """The normalised problems of every record; a record that cannot be normalised is an error naming the file
        and the line."""
        from prift.data import DataError, load_records, record_location
        out = []
        for i, r in enumerate(load_records(entry["data"])):
            try:
                out.append(problem(r, entry["format"], i, name))
            except ValueError as e:
                raise DataError(f"{record_location(entry['data'], i)}: {e}") from None
        return out

    def problem_texts(self, entry):
        """Training problems are matched on the records' `problem` text (code and multiple-choice test sets are
        disjoint from their training sets by construction: Tulu personas vs. HumanEval/MBPP/LiveCodeBench, MedMCQA
        train vs. dev)."""
        from prift.data import load_records
        return {r.get("problem") or r.get("question") for r in load_records(entry["data"])}

    def prompts(self, tokenizer, problems, *, chat=True, prompt="harness"):
        from prift.data import harness_prompt, math_messages
        if prompt == "harness":
            return [harness_prompt(p["problem"]) for p in problems]
        if prompt == "template":
            return [tokenizer.apply_chat_template(math_messages(p["problem"], "qwen-boxed"),
                                                  add_generation_prompt=True, tokenize=False) for p in problems]
        raise ValueError(f"generation.prompt must be 'harness' or 'template', not {prompt!r}")

    def stops(self, tokenizer, *, chat=True, fmt=None, stop=None, stop_token_ids="auto"):
        """`stop` (default: the harness's) and `stop_token_ids` ("auto": the ids of the stop strings that are single
        tokens)."""
        strings = list(HARNESS_STOP if stop is None else stop)
        ids = single_token_ids(tokenizer, strings) if stop_token_ids == "auto" else [int(i) for i in stop_token_ids]
        return strings, ids

    def grade(self, name, entry, out, *, problems=None, samples=None, model=None, cfg=None, log=print):
        return grade_file(samples, problems, out)

    def metrics(self, grades, labels, *, k, n_boot=1000, seed=0):
        return avg_pass_metrics(grades, k, labels, n_boot=n_boot, seed=seed)

    def verdict(self, metric):
        """The harness-style verdict (the paper's), math-verify's for the metrics named `<metric>:math_verify`."""
        return "math_verify" if metric.endswith(":math_verify") else "qwen"
