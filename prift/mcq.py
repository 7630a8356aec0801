"""Medical multiple-choice QA (MedQA 4-option, MMLU-medical, MedMCQA) as lm-evaluation-harness tasks.

Protocol of ASFT, which the paper follows: zero-shot prompt
"Question: {q}\\n\\nOptions:\\nA. ...\\nB. ...\\nC. ...\\nD. ...\\n\\nAnswer:" (the same string as
:func:`prift.data.mcq_prompt`), prediction = the option letter with the highest next-token log-probability, accuracy.

The tasks are the YAMLs shipped in ``prift/tasks/`` (``output_type: multiple_choice``).  Choices are
``["A", "B", "C", "D"]`` with lm-eval's default ``target_delimiter: " "``, so the scored continuation is " A" .. " D":
after "Answer:" the letter is a separate word, and for the paper's LLaMA-2 (sentencepiece: "▁A" is one token, the
same id as ``tokenizer("A")[-1]``) as for Qwen's byte-level BPE ("ĠA" is one token) the continuation is exactly one
token, so its log-likelihood is the next-token log-probability of the letter and ``acc`` (argmax over the four) is
the ASFT prediction.  (Bare "A" would be the in-word token "A" for BPE tokenizers, which is not what a model emits
after "Answer:".)  ``acc_norm`` is not used: single-token continuations make it equal to ``acc``.

Data files are local jsonl (``dataset_path: json``); :func:`task_dir` renders the YAMLs into a directory with the
absolute data path filled in, which :func:`task_manager` gives to lm-eval (``include_path``, no built-in tasks).
Backends: lm-eval's ``hf`` (transformers) or ``vllm`` (``backend="vllm"``), or any ``lm_eval.api.model.LM`` instance.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
PLACEHOLDER = "__PRIFT_DATA_FILE__"
LETTERS = ("A", "B", "C", "D")

# The record formats (the `format:` of an mcq benchmark entry, prift.benchmarks): the lm-eval task of each, its YAML,
# the evaluation file's name and its number of questions.
MCQ_FORMATS = {
    "medqa": {"task": "prift_medqa", "yaml": "prift_medqa.yaml", "file": "medqa_test.jsonl", "count": 1273},
    "mmlu": {"task": "prift_mmlu_medical", "yaml": "prift_mmlu_medical.yaml", "file": "mmlu_medical_test.jsonl",
             "count": 2739},
    "medmcqa": {"task": "prift_medmcqa", "yaml": "prift_medmcqa.yaml", "file": "medmcqa_test.jsonl", "count": 4183},
}


def mcq_format(fmt: str) -> dict:
    """The task, YAML, file and count of a record format; an unknown one is a ValueError naming the known ones."""
    if fmt not in MCQ_FORMATS:
        raise ValueError(f"not a multiple-choice record format: {fmt!r} (known: {', '.join(MCQ_FORMATS)})")
    return MCQ_FORMATS[fmt]


# ----------------------------------------------------------------------------------------------------------------
# the records, independently of lm-eval (used by the tests and by the training-prompt consistency check)
# ----------------------------------------------------------------------------------------------------------------

def options(record: dict, fmt: str) -> list[str]:
    mcq_format(fmt)
    if fmt == "medqa":
        return [record["options"][k] for k in LETTERS]
    if fmt == "medmcqa":
        return [record[k] for k in ("opa", "opb", "opc", "opd")]
    return list(record["choices"])


def gold_index(record: dict, fmt: str) -> int:
    mcq_format(fmt)
    if fmt == "medqa":
        return LETTERS.index(record["answer_idx"])
    if fmt == "medmcqa":
        return int(record["cop"])
    return int(record["answer"])


def prompt(record: dict, fmt: str) -> str:
    from prift.data import mcq_prompt
    return mcq_prompt(record["question"], dict(zip(LETTERS, options(record, fmt))))


# ----------------------------------------------------------------------------------------------------------------
# lm-eval tasks
# ----------------------------------------------------------------------------------------------------------------

def task_dir(data_paths: dict[str, str | Path], out_dir: str | Path | None = None) -> Path:
    """Render the shipped YAMLs of ``{record format: data file}`` into ``out_dir`` (a new temporary directory by
    default) with the absolute data paths filled in; returns the directory (an lm-eval include path)."""
    rendered = {}
    for fmt, path in data_paths.items():
        spec = mcq_format(fmt)
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{fmt}: data file not found: {path}")
        text = (TASKS_DIR / spec["yaml"]).read_text()
        if PLACEHOLDER not in text:
            raise ValueError(f"{spec['yaml']} has no {PLACEHOLDER} placeholder")
        rendered[spec["yaml"]] = text.replace(PLACEHOLDER, json.dumps(str(path)))
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="prift-lmeval-tasks-"))
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text)
    return out


def task_manager(include_path: str | Path):
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=str(include_path), include_defaults=False)


def _model_spec(backend: str, model_path: str, dtype: str, model_args: dict | None, device: str | None):
    args = {"pretrained": str(model_path), "dtype": dtype}
    if backend == "hf":
        if device:
            args["device"] = device
    elif backend != "vllm":
        raise ValueError(f"unknown lm-eval backend {backend!r} (hf or vllm)")
    args.update(model_args or {})
    return backend, args


def evaluate_mcq(model_path: str | None, fmt: str, data_path: str | Path, *, limit: int | None = None,
                 batch_size: int | str = 8, backend: str = "hf", dtype: str = "float32", device: str | None = None,
                 model_args: dict | None = None, lm=None, log=print) -> dict:
    """Score one benchmark file of record format ``fmt`` (MCQ_FORMATS) with lm-eval. ``backend``: "hf"
    (transformers) or "vllm" (``model_args`` e.g. ``{"tensor_parallel_size": 1, "gpu_memory_utilization": 0.8,
    "max_model_len": 2048}``); ``lm``: an ``lm_eval.api.model.LM`` instance instead of a model path. Returns
    ``{format, task, n, accuracy, records}`` with one record per question ``{id, doc_id, gold, pred, correct,
    logprobs}`` (letters; log-likelihoods of " A".." D"); ``accuracy`` is a fraction and equals lm-eval's own
    ``acc``."""
    import lm_eval
    spec = mcq_format(fmt)
    with tempfile.TemporaryDirectory(prefix="prift-lmeval-") as tmp:
        tm = task_manager(task_dir({fmt: data_path}, tmp))
        if lm is not None:
            model, margs = lm, None
        else:
            model, margs = _model_spec(backend, model_path, dtype, model_args, device)
        res = lm_eval.simple_evaluate(model=model, model_args=margs, tasks=[spec["task"]], task_manager=tm,
                                      num_fewshot=0, batch_size=batch_size, limit=limit, log_samples=True,
                                      bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                      fewshot_random_seed=0)
    if res is None:   # non-zero ranks of a distributed run
        return {}
    samples = sorted(res["samples"][spec["task"]], key=lambda s: s["doc_id"])
    records = []
    for s in samples:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        pred = max(range(len(lls)), key=lambda i: lls[i])
        gold = int(s["target"]) if not isinstance(s["target"], str) else LETTERS.index(s["target"])
        doc = s.get("doc") or {}
        records.append({"id": str(doc.get("id", s["doc_id"])), "doc_id": int(s["doc_id"]), "gold": LETTERS[gold],
                        "pred": LETTERS[pred], "correct": pred == gold, "acc": float(s["acc"]),
                        "logprobs": lls})
    acc = res["results"][spec["task"]]["acc,none"]
    mine = sum(r["correct"] for r in records) / max(len(records), 1)
    if abs(mine - acc) > 1e-9:
        raise RuntimeError(f"{fmt}: accuracy from the per-question records ({mine}) differs from lm-eval's ({acc})")
    log(f"{fmt}: accuracy {100 * acc:.2f} on {len(records)} questions ({backend if lm is None else type(lm).__name__})")
    return {"format": fmt, "task": spec["task"], "n": len(records), "accuracy": acc, "records": records}


def grade_mcq(model_path: str, fmt: str, data_path: str | Path, out: str | Path, **kwargs) -> dict:
    """:func:`evaluate_mcq` and write its per-question records (jsonl; ``sample`` = 0) for ``prift metrics``."""
    from prift.io import write_jsonl
    r = evaluate_mcq(model_path, fmt, data_path, **kwargs)
    write_jsonl(out, [rec | {"sample": 0} for rec in r["records"]])
    return {"questions": r["n"], "accuracy": r["accuracy"]}

