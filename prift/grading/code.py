"""Code benchmarks: the benchmark-name dispatch the CLI uses (suite, prompt, graded program).

The code benchmarks run untrusted programs, so their machinery lives in its own modules:
  prift.codeeval       HumanEval+ / MBPP+ through evalplus's own evaluation (prompt, extraction, verdicts)
  prift.livecodebench  LiveCodeBench v5 / v6 (pinned date windows, loader, prompt, extraction, grader)
  prift.sandbox        the confinement every model-written program runs under
"""

from __future__ import annotations


CODE_SUITES = ("evalplus", "livecodebench")


def code_suite(benchmark: str) -> str:
    """'evalplus' for HumanEval+ / MBPP+ names, 'livecodebench' for LiveCodeBench ones (lcb_v5, livecodebench_v6)."""
    b = str(benchmark).lower().replace("-", "_")
    if b.startswith(("lcb", "livecodebench")):
        return "livecodebench"
    if b.startswith(("humaneval", "mbpp")):
        return "evalplus"
    raise ValueError(f"not a code benchmark: {benchmark!r}")


def code_prompt(tokenizer, problem: dict, suite: str) -> str:
    """The generation prompt of a code problem (chat template applied, assistant turn opened)."""
    if suite == "evalplus":
        from prift.codeeval import evalplus_prompt
        return evalplus_prompt(tokenizer, problem)
    if suite == "livecodebench":
        from prift.livecodebench import lcb_prompt
        return lcb_prompt(tokenizer, problem)
    raise ValueError(f"unknown code suite {suite!r} (known: {CODE_SUITES})")


def code_solution(response: str, problem: dict, suite: str, chat: bool = True) -> str:
    """The program a response is graded on (evalplus: extraction + evalplus's sanitize; LiveCodeBench: the code
    between the last two ``` lines)."""
    if suite == "evalplus":
        from prift.codeeval import extract_solution
        return extract_solution(response, problem["entry_point"], prompt=problem.get("problem"), chat=chat)
    if suite == "livecodebench":
        from prift.livecodebench import extract_lcb_code
        return extract_lcb_code(response)
    raise ValueError(f"unknown code suite {suite!r} (known: {CODE_SUITES})")
