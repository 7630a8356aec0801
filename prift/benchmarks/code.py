"""Code benchmarks: HumanEval+ / MBPP+ through evalplus (prift.codeeval) and LiveCodeBench (prift.livecodebench).

Both sample greedily (the config's `generation` override), grade every sample by running its program in the sandbox
(prift.sandbox) and report pass@1; their harness modules hold the prompts, the extraction and the evaluation, these
kinds say which of them a benchmark entry uses.
"""
from __future__ import annotations

from prift.benchmarks.registry import Kind, data_path, register


def evalplus_chat(tokenizer, chat: bool = True) -> bool:
    """Whether evalplus prompts are chat prompts: asked for and possible (evalplus falls back to direct completion
    for a tokenizer without a chat template)."""
    from prift.codeeval import is_chat
    return bool(chat) and is_chat(tokenizer)


@register
class Evalplus(Kind):
    """HumanEval+ (format humaneval) and MBPP+ (format mbpp): evalplus's chat prompt (`chat: false`: the bare problem
    prompt for the model to continue), its stops, its evaluation; verdicts base and plus (base and extra tests)."""
    name = "evalplus"
    formats = ("humaneval", "mbpp")   # = prift.codeeval.EVALPLUS_DATASETS
    reads = ("chat",)
    # The tables read "pass@1" (Tables 4, 11: evalplus's "plus" verdict, as evalplus reports HumanEval+ / MBPP+)
    verdicts = {"pass@1": "plus", "pass@1:base": "base"}

    def prepare(self, name, entry, log=print):
        from prift.codeeval import load_evalplus_problems
        rows = load_evalplus_problems(data_path(name, entry))
        limit = entry["data"].get("limit")
        return rows[:limit] if limit else rows

    def prompts(self, tokenizer, problems, *, chat=True, prompt="harness"):
        if not evalplus_chat(tokenizer, chat):
            return [p["problem"].strip() + "\n" for p in problems]
        from prift.codeeval import evalplus_prompt
        return [evalplus_prompt(tokenizer, p) for p in problems]

    def stops(self, tokenizer, *, chat=True, fmt=None, stop=None, stop_token_ids="auto"):
        """evalplus's EOS list plus "\\n```\\n" for chat prompts, or its direct-completion stops of the format."""
        from evalplus.provider.utility import EOS, extra_eos_for_direct_completion
        strings = list(EOS) + (["\n```\n"] if evalplus_chat(tokenizer, chat)
                               else extra_eos_for_direct_completion(fmt or "humaneval"))
        return strings, []

    def sample_fields(self, tokenizer, chat=True):
        return {"chat": evalplus_chat(tokenizer, chat)}

    def grade(self, name, entry, out, *, problems=None, samples=None, model=None, cfg=None, log=print):
        from prift.codeeval import grade_evalplus_file
        from prift.data import read_jsonl
        first = next(iter(read_jsonl(samples)), {})
        chat = first.get("chat", entry.get("chat", True))   # what generation used (no chat template → False)
        return grade_evalplus_file(samples, problems, out, dataset=entry["format"], data_path=data_path(name, entry),
                                   chat=chat, log=log)


@register
class LiveCodeBench(Kind):
    """LiveCodeBench's code generation scenario: a release tag's problems (`version`), its chat prompt and "###" stop,
    every test in the sandbox (`timeout` seconds each); verdict passed."""
    name = "livecodebench"
    reads = ("version", "timeout")
    verdicts = {"pass@1": "passed"}

    def prepare(self, name, entry, log=print):
        from prift import livecodebench as L
        src = entry["data"]
        if src.get("path"):
            shards = src["path"]
        elif src.get("hub"):
            if src["hub"] != L.LCB_HUB:
                raise SystemExit(f"benchmark '{name}': LiveCodeBench shards are read from {L.LCB_HUB}, "
                                 f"not {src['hub']}")
            shards = L.download_lcb_shards(entry["version"], revision=src.get("revision"))
        else:
            raise SystemExit(f"benchmark '{name}': give the LiveCodeBench shards as data.path (a directory with "
                             f"test*.jsonl) or data.hub: {L.LCB_HUB}")
        rows = L.load_lcb_problems(shards, entry["version"], log=log)
        limit = src.get("limit")
        return rows[:limit] if limit else rows

    def prompts(self, tokenizer, problems, *, chat=True, prompt="harness"):
        from prift.livecodebench import lcb_prompt
        return [lcb_prompt(tokenizer, p) for p in problems]

    def stops(self, tokenizer, *, chat=True, fmt=None, stop=None, stop_token_ids="auto"):
        from prift.livecodebench import LCB_STOP
        return list(LCB_STOP), []

    def grade(self, name, entry, out, *, problems=None, samples=None, model=None, cfg=None, log=print):
        from prift.lcb_judge import TEST_TIMEOUT_S, grade_lcb_file
        return grade_lcb_file(samples, problems, out, timeout=entry.get("timeout", TEST_TIMEOUT_S), log=log)
