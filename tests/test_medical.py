"""Medical multiple-choice QA as lm-eval tasks (prift/tasks/*.yaml, prift.mcq) on the real evaluation files in
``data/medical``: the tasks load every question, render ASFT's prompt and the gold letter as an independent
reading of the files does, a scripted oracle scores 100 % (and its mirror 0 %), and lm-eval's HF backend on the
tiny backbone gives the log-likelihoods that transformers gives directly."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from prift import mcq
from prift.grading import mcq_prediction

COUNTS = {"medqa": 1273, "mmlu": 2739, "medmcqa": 4183}   # record formats (prift.mcq.MCQ_FORMATS)


@pytest.fixture(scope="session")
def med_files(eval_data) -> dict[str, Path]:
    return {b: eval_data / "medical" / mcq.MCQ_FORMATS[b]["file"] for b in COUNTS}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tasks(med_files, tmp_path_factory):
    include = mcq.task_dir(med_files, tmp_path_factory.mktemp("tasks"))
    names = [mcq.MCQ_FORMATS[b]["task"] for b in COUNTS]
    loaded = mcq.task_manager(include).load(names)
    return {b: loaded["tasks"][mcq.MCQ_FORMATS[b]["task"]] for b in COUNTS}


def test_yamls_ship_with_the_package():
    for spec in mcq.MCQ_FORMATS.values():
        text = (mcq.TASKS_DIR / spec["yaml"]).read_text()
        assert mcq.PLACEHOLDER in text and "output_type: multiple_choice" in text
        assert 'doc_to_choice: ["A", "B", "C", "D"]' in text and 'target_delimiter: " "' in text
    with pytest.raises(FileNotFoundError):
        mcq.task_dir({"medqa": "/nonexistent/medqa.jsonl"})


@pytest.mark.parametrize("bench", list(COUNTS))
def test_tasks_load_all_questions_with_asft_prompt_and_gold(tasks, med_files, bench):
    task = tasks[bench]
    docs = list(task.test_docs())
    rows = _rows(med_files[bench])
    assert len(docs) == len(rows) == COUNTS[bench]
    for doc, row in zip(docs, rows):
        assert task.doc_to_text(doc) == mcq.prompt(row, bench)          # == prift.data.mcq_prompt, ASFT's string
        gold = task.doc_to_target(doc)
        gold = task.doc_to_choice(doc).index(gold) if isinstance(gold, str) else gold
        assert gold == mcq.gold_index(row, bench)
    first = mcq.prompt(rows[0], bench)
    assert first.startswith("Question: ") and "\n\nOptions:\nA. " in first and first.endswith("\n\nAnswer:")


class ScriptedLM:
    """An lm-eval LM that reads the gold answer from the raw record (not from the task) and scores it best
    (``mirror``: worst)."""

    def __new__(cls, bench: str, mirror: bool = False):
        from lm_eval.api.model import LM

        class _LM(LM):
            def __init__(self):
                super().__init__()
                self.requests = 0

            def loglikelihood(self, requests, disable_tqdm=False):
                out = []
                for r in requests:
                    ctx, cont = r.args
                    assert ctx == mcq.prompt(r.doc, bench) and cont in (" A", " B", " C", " D")
                    hit = cont == " " + mcq.LETTERS[mcq.gold_index(r.doc, bench)]
                    out.append(((-9.0 if hit else -1.0) if mirror else (-0.1 if hit else -4.0), hit))
                self.requests += len(requests)
                return out

            def loglikelihood_rolling(self, requests, disable_tqdm=False):
                raise NotImplementedError

            def generate_until(self, requests, disable_tqdm=False):
                raise NotImplementedError
        return _LM()


@pytest.mark.parametrize("bench", list(COUNTS))
def test_oracle_scores_100_on_every_question(med_files, bench):
    lm = ScriptedLM(bench)
    r = mcq.evaluate_mcq(None, bench, med_files[bench], lm=lm, log=lambda *_: None)
    assert r["n"] == COUNTS[bench] and lm.requests == 4 * COUNTS[bench]
    assert r["accuracy"] == 1.0 and all(x["correct"] and x["pred"] == x["gold"] for x in r["records"])
    assert len({x["id"] for x in r["records"]}) == COUNTS[bench]      # unique keys for the metrics


@pytest.mark.parametrize("bench", list(COUNTS))
def test_mirrored_oracle_scores_0(med_files, bench):
    r = mcq.evaluate_mcq(None, bench, med_files[bench], lm=ScriptedLM(bench, mirror=True), limit=200,
                         log=lambda *_: None)
    assert r["n"] == 200 and r["accuracy"] == 0.0


def test_hf_backend_end_to_end_on_tiny_model(tiny_backbone, med_files, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    n = 10
    out = tmp_path / "grades.jsonl"
    stats = mcq.grade_mcq(str(tiny_backbone), "medqa", med_files["medqa"], out, limit=n, batch_size=4,
                          backend="hf", dtype="float32", device="cpu", log=lambda *_: None)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert stats["questions"] == n == len(recs)
    # the same log-likelihoods computed directly with transformers: log P(" X" | prompt), summed over its tokens
    # (the tiny tokenizer splits " A" into "Ġ" + "A"; real LLaMA-2 / Qwen vocabularies have it as one token), with
    # the prompt cut on the left to the model's positions as lm-eval does (the tiny model has 512, MedQA needs more)
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    model = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.float32).eval()
    max_len = model.config.max_position_embeddings
    rows = _rows(med_files["medqa"])
    for rec in recs:
        ctx = mcq.prompt(rows[rec["doc_id"]], "medqa")
        ctx_ids = tok(ctx, add_special_tokens=False).input_ids
        mine = []
        for letter in mcq.LETTERS:
            ids = tok(ctx + " " + letter, add_special_tokens=False).input_ids
            n_cont = len(ids) - len(ctx_ids)
            window = ids[-(max_len + 1):]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([window[:-1]])).logits[0].float(), -1)
            targets = window[1:]
            mine.append(sum(float(logp[j, targets[j]]) for j in range(len(targets) - n_cont, len(targets))))
        assert rec["logprobs"] == pytest.approx(mine, abs=1e-3)
        assert rec["pred"] == mcq_prediction(mine) and rec["correct"] == (rec["pred"] == rec["gold"])
        assert rec["gold"] == rows[rec["doc_id"]]["answer_idx"]
    assert stats["accuracy"] == pytest.approx(sum(r["correct"] for r in recs) / n)
    from prift.benchmarks import KINDS
    (m,) = KINDS["mcq"].metrics(out, {"benchmark": "medqa"}, k=1, n_boot=200)
    assert m["metric"] == "acc" and math.isclose(m["value"], 100 * stats["accuracy"]) and m["n_problems"] == n


def test_vllm_backend_when_available(tiny_backbone, med_files):
    pytest.importorskip("vllm")
    import torch
    if not torch.cuda.is_available():
        pytest.skip("vLLM backend needs a GPU")
    r = mcq.evaluate_mcq(str(tiny_backbone), "medqa", med_files["medqa"], limit=10, backend="vllm",
                         model_args={"gpu_memory_utilization": 0.3, "max_model_len": 2048}, log=lambda *_: None)
    hf = mcq.evaluate_mcq(str(tiny_backbone), "medqa", med_files["medqa"], limit=10, backend="hf",
                          log=lambda *_: None)
    assert [x["pred"] for x in r["records"]] == [x["pred"] for x in hf["records"]]
