"""Medical multiple choice (MedQA, MMLU-medical, MedMCQA): nothing is sampled, lm-eval scores the option letters of
the model itself (prift.mcq: the task of the entry's `format:`, ASFT's zero-shot prompt, argmax over " A".." D").

grades  {id, doc_id, sample=0, gold, pred, correct, acc, logprobs}, one line per question; metric acc (Tables 2, 9)
"""
from __future__ import annotations

from prift.benchmarks.registry import Kind, data_path, register


def lmeval_backend(cfg: dict) -> dict:
    """lm-eval backend, dtype and model args: vLLM on GPU (bf16), transformers on CPU (fp32); the generation
    section's backend choice applies (transformers → lm-eval's hf)."""
    import torch
    g = cfg["generation"]
    cuda = torch.cuda.is_available()
    backend = {"auto": "vllm" if cuda else "hf", "vllm": "vllm", "transformers": "hf"}[g.get("backend", "auto")]
    kw = {"backend": backend, "dtype": "bfloat16" if cuda else "float32"}
    if backend == "vllm":
        kw |= {"batch_size": "auto", "model_args": ({"tensor_parallel_size": g["tensor_parallel_size"]}
                                                     if "tensor_parallel_size" in g else {})}
    else:
        kw |= {"batch_size": 8, "device": "cuda" if cuda else "cpu"}
    return kw


@register
class MultipleChoice(Kind):
    name = "mcq"
    formats = ("medqa", "mmlu", "medmcqa")   # = prift.mcq.MCQ_FORMATS
    sampled = False
    verdicts = {"acc": "correct"}            # prift.mcq's per-question correctness

    def prepare(self, name, entry, log=print):
        raise SystemExit(f"benchmark '{name}' (kind mcq) has no prepare step: `prift grade --model` scores the "
                         f"model on {entry['data'].get('path') or entry['data']} directly")

    def grade(self, name, entry, out, *, problems=None, samples=None, model=None, cfg=None, log=print):
        from prift.config import resolve_weights
        from prift.mcq import grade_mcq
        return grade_mcq(resolve_weights(cfg, model), entry["format"], data_path(name, entry), out,
                         limit=entry["data"].get("limit"), log=log, **lmeval_backend(cfg))
