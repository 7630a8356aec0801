"""The code and multiple-choice benchmarks through the `prift` verbs the DAG calls: prepare → (generate) → grade →
metrics → tables, on CPU, with a config of their own (HumanEval+ restricted to 3 problems, MedQA to 5 questions)."""
from __future__ import annotations

import json

import pytest
import yaml

from prift.cli import main
from prift.data import read_jsonl
from prift.io import write_jsonl


@pytest.fixture()
def wiring(tmp_path, eval_data, tiny_backbone, monkeypatch):
    he = eval_data / "code" / "HumanEvalPlus-v0.1.10.jsonl.gz"
    medqa = eval_data / "medical" / "medqa_test.jsonl"
    monkeypatch.setenv("PRIFT_EVALPLUS_CACHE", str(tmp_path / "evalplus-cache"))
    toy = {"generator": "demo_math", "split": "train", "n": 8}
    cfg = {
        "seed": 0, "results": str(tmp_path / "results"),
        "backbones": {"tiny": {"label": "Tiny", "path": str(tiny_backbone)}},
        "domains": {"code": {"train": toy, "format": "math", "benchmarks": ["humaneval_plus"]},
                    "medical": {"train": toy, "format": "math", "benchmarks": ["medqa"]}},
        "benchmarks": {
            "humaneval_plus": {"label": "HumanEval+", "kind": "evalplus", "format": "humaneval",
                               "data": {"path": str(he), "limit": 3},
                               "generation": {"n": 1, "temperature": 0.0, "max_new_tokens": 12}},
            "medqa": {"label": "MedQA", "kind": "mcq", "format": "medqa", "data": {"path": str(medqa), "limit": 5}}},
        "methods": {"sft": {"label": "SFT", "rule": "sft", "source": "online"}},
        "training": {"code": {}, "medical": {}},
        "generation": {"backend": "transformers", "n": 16, "temperature": 1.0, "max_new_tokens": 64},
        "evaluation": {"k": 16, "n_boot": 50},
        "tables": {
            "table4": {"domain": "code", "backbones": ["tiny"], "methods": ["original"],
                       "benchmarks": ["humaneval_plus"], "metrics": {"pass@1": "pass@1"}},
            "table9": {"domain": "medical", "backbones": ["tiny"], "methods": ["original"], "benchmarks": ["medqa"],
                       "metrics": {"acc": "Acc"}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return {"config": str(path), "tmp": tmp_path, "he": he, "model": str(tiny_backbone)}


def _run(*argv):
    assert main(list(argv)) == 0, argv


def test_humaneval_plus_prepare_grade_metrics(wiring):
    from prift.codeeval import read_evalplus_file
    cfg, tmp = wiring["config"], wiring["tmp"]
    _run("prepare", "--config", cfg, "--benchmark", "humaneval_plus", "--out", str(tmp / "problems.jsonl"))
    problems = read_jsonl(tmp / "problems.jsonl")
    assert [p["id"] for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert set(problems[0]) == {"id", "problem", "entry_point"}
    # "samples" written by hand: each problem's canonical solution, as a chat model would continue the opened block
    canon = {r["task_id"]: r["prompt"] + r["canonical_solution"] for r in read_evalplus_file(wiring["he"])}
    write_jsonl(tmp / "samples.jsonl", [{"id": p["id"], "sample": 0, "text": canon[p["id"]], "finish_reason": "stop"}
                                        for p in problems])
    _run("grade", "--config", cfg, "--benchmark", "humaneval_plus", "--problems", str(tmp / "problems.jsonl"),
         "--samples", str(tmp / "samples.jsonl"), "--out", str(tmp / "grades.jsonl"))
    grades = read_jsonl(tmp / "grades.jsonl")
    assert [(g["id"], g["base"], g["plus"]) for g in grades] == [(p["id"], True, True) for p in problems]
    _run("metrics", "--config", cfg, "--run", "code/tiny/original", "--benchmark", "humaneval_plus",
         "--grades", str(tmp / "grades.jsonl"), "--out", str(tmp / "metrics.json"))
    recs = json.loads((tmp / "metrics.json").read_text())
    assert [(r["metric"], r["value"], r["n_problems"]) for r in recs] == [("pass@1", 100.0, 3),
                                                                          ("pass@1:base", 100.0, 3)]
    assert recs[0]["run"] == "code/tiny/original" and recs[0]["variant"] == ""
    _run("tables", "--config", cfg, "--table", "table4", "--metrics", str(tmp / "metrics.json"),
         "--out-csv", str(tmp / "t4.csv"), "--out-tex", str(tmp / "t4.tex"))
    assert "100.00" in (tmp / "t4.csv").read_text()


def test_code_generation_is_greedy_with_the_evalplus_prompt(wiring):
    """`prift generate --benchmark` applies the benchmark's generation override (n 1, temperature 0: greedy) and
    evalplus's prompt; the samples say whether the chat prompt was used (the grader rebuilds the program from it)."""
    cfg, tmp = wiring["config"], wiring["tmp"]
    _run("prepare", "--config", cfg, "--benchmark", "humaneval_plus", "--out", str(tmp / "problems.jsonl"))
    outs = []
    for i in range(2):
        out = tmp / f"samples{i}.jsonl"
        _run("generate", "--config", cfg, "--model", wiring["model"], "--benchmark", "humaneval_plus",
             "--problems", str(tmp / "problems.jsonl"), "--out", str(out))
        outs.append(read_jsonl(out))
    rows = outs[0]
    assert [(r["id"], r["sample"]) for r in rows] == [(f"HumanEval/{i}", 0) for i in range(3)]
    assert all(r["completion_tokens"] <= 12 and isinstance(r["chat"], bool) for r in rows)
    assert [r["text"] for r in outs[1]] == [r["text"] for r in rows]   # greedy: the same text again
    from prift.backbone import load_tokenizer
    from prift.benchmarks import KINDS
    from prift.codeeval import evalplus_prompt, is_chat
    tok = load_tokenizer(wiring["model"])
    problems = read_jsonl(tmp / "problems.jsonl")
    assert rows[0]["chat"] == is_chat(tok)
    evalplus = KINDS["evalplus"]
    assert evalplus.prompts(tok, problems[:1]) == [evalplus_prompt(tok, problems[0])]
    assert evalplus.prompts(tok, problems[:1], chat=False) == [problems[0]["problem"].strip() + "\n"]


def test_mcq_grade_and_metrics(wiring):
    cfg, tmp = wiring["config"], wiring["tmp"]
    with pytest.raises(SystemExit, match="no prepare step"):
        main(["prepare", "--config", cfg, "--benchmark", "medqa", "--out", str(tmp / "x.jsonl")])
    _run("grade", "--config", cfg, "--benchmark", "medqa", "--model", wiring["model"], "--out",
         str(tmp / "grades.jsonl"))
    grades = read_jsonl(tmp / "grades.jsonl")
    assert len(grades) == 5 and all(g["sample"] == 0 and g["pred"] in "ABCD" and len(g["logprobs"]) == 4
                                    for g in grades)
    _run("metrics", "--config", cfg, "--run", "medical/tiny/original", "--benchmark", "medqa",
         "--grades", str(tmp / "grades.jsonl"), "--out", str(tmp / "metrics.json"))
    (rec,) = json.loads((tmp / "metrics.json").read_text())
    assert rec["metric"] == "acc" and rec["n_problems"] == 5
    assert rec["value"] == pytest.approx(100 * sum(g["correct"] for g in grades) / 5)
    _run("tables", "--config", cfg, "--table", "table9", "--metrics", str(tmp / "metrics.json"),
         "--out-csv", str(tmp / "t9.csv"), "--out-tex", str(tmp / "t9.tex"))
    assert f"{rec['value']:.2f}" in (tmp / "t9.csv").read_text()
