"""HumanEval+ (v0.1.10, 164 problems) and MBPP+ (v0.2.0, 378) through evalplus's own evaluation, offline.

Prompt (instruct models, the paper's Qwen3-4B-Instruct and Qwen2.5-Coder-3B): evalplus's own chat prompt, made by
``evalplus.provider.utility.make_raw_chat_prompt`` with evalplus's default prefixes -- the user turn is
``INSTRUCTION_PREFIX`` followed by the problem's prompt in a bare ``` code block, and the assistant turn is opened
with ``RESPONSE_PREFIX`` and "```python\\n" (the model continues inside the code block).  A tokenizer without a chat
template gets the problem's prompt itself (evalplus's direct completion; the solution is then prompt + completion).

Extraction (:func:`extract_solution`): the response is put back behind the opened "```python" fence; of its fenced
blocks the last one that defines the entry point is taken (else the last block; an unterminated last block counts;
no fence at all: the whole text), and evalplus's ``sanitize(code, entry_point)`` keeps the imports and the
definitions the entry point depends on -- what evalplus's codegen stores as the sample's ``solution``.

Evaluation (:func:`evaluate_evalplus`): a grader subprocess loads the problems and the ground truth with evalplus's
own loaders (HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH set before evalplus is imported, pointing at an
uncompressed copy of the shared data file restricted to the problems that have samples; the expected outputs of the
canonical solutions cached by evalplus, keyed by the data file's md5, under ``cache_dir`` and computed under a file
lock).  Every sample's base and plus test sets then run, each in a fresh sandbox runner (:mod:`prift.sandbox`:
evalplus's ``reliability_guard`` and ``swallow_io``, then Landlock / seccomp / the audit hook, a tmpfs, an empty
network namespace, a scrubbed environment), which gets the code and the inputs only and answers with the outputs as
plain data; the grader times each answer against evalplus's per-test limit and judges it with evalplus's comparison
(:mod:`prift.evalplus_judge`), so the program can neither see the expected outputs nor fake the comparison.
Verdicts are evalplus's: ``base`` = base tests passed, ``plus`` = base and extra tests passed (evalplus's
"humaneval+" / "mbpp+" pass@1, the paper's numbers); statuses pass / fail / timeout as evalplus assigns them (a test
past its own limit fails, a run past the task's total limit -- e.g. top-level code that loops -- times out).

Known evalplus 0.3.1 behaviour kept as is: HumanEval/32 (``find_zero``) fails for every solution, the canonical one
included (its special oracle ``continue``s before recording the test as passed; evalplus PR #201 discussion), so
HumanEval+ tops out at 163/164.  Time limits are evalplus's (max(1 s, 4 x the canonical solution's time) per test,
min(60 s, their sum) + 2 s per test set): on a loaded or slow machine, canonical solutions of a few problems with
heavy inputs can time out.  Where the runner departs from evalplus's own child: evalplus forks it from a process that
has numpy and pandas imported (their import breaks after the guard), the runner imports them first when the program
names them (:data:`EVALPLUS_PRELOADED`); a list / tuple output longer than 65,536 items crosses in chunks whose
transfer gets the test's limit again plus 1 s per 25 MB (writing Mbpp/255's 925 MB expected output as JSON takes
longer than computing it); outputs that are not plain data fail (:mod:`prift.sandbox.plain`), except for the tasks
whose reference only asks whether the output is None (``MBPP_OUTPUT_NOT_NONE_TASKS``: the runner sends that bool).

The parent process imports only ``evalplus.sanitize`` and ``evalplus.provider.utility`` (whose import reads the
override variables but never loads data); evalplus's data loaders run only in the evaluation subprocess.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prift.sandbox import AS_DEFAULT, assert_unreadable, describe as describe_sandbox

# evalplus's codegen defaults for instruct models (evalplus/codegen.py, run_codegen)
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a "
                      "markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:")

# evalplus's datasets: the `format:` of an evalplus benchmark entry (prift.benchmarks)
EVALPLUS_DATASETS = {
    "humaneval": {"env": "HUMANEVAL_OVERRIDE_PATH", "file": "HumanEvalPlus-v0.1.10.jsonl.gz", "count": 164},
    "mbpp": {"env": "MBPP_OVERRIDE_PATH", "file": "MbppPlus-v0.2.0.jsonl.gz", "count": 378},
}


# Modules evalplus's own worker process has imported when it runs a program (evalplus.eval imports numpy, evalplus.data
# imports datasets and with it pandas); their import breaks after evalplus's reliability_guard (os.putenv is None),
# so the runner imports them first when a program names them.
EVALPLUS_PRELOADED = ("numpy", "pandas")


def default_cache_dir() -> Path:
    return Path(os.environ.get("PRIFT_EVALPLUS_CACHE", Path.home() / ".cache" / "prift" / "evalplus"))


# ----------------------------------------------------------------------------------------------------------------
# problems and prompts
# ----------------------------------------------------------------------------------------------------------------

def read_evalplus_file(path: str | Path) -> list[dict]:
    """The records of an evalplus release file (.jsonl or .jsonl.gz), in file order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_evalplus_problems(path: str | Path, task_ids: list[str] | None = None) -> list[dict]:
    """Problems for generation and grading: ``{id, problem, entry_point}`` (``problem`` = the prompt given to
    the model: a function signature with docstring for HumanEval+, a task description with one assert for
    MBPP+)."""
    rows = read_evalplus_file(path)
    keep = set(task_ids) if task_ids is not None else None
    return [{"id": r["task_id"], "problem": r["prompt"], "entry_point": r["entry_point"]}
            for r in rows if keep is None or r["task_id"] in keep]


def evalplus_prompt(tokenizer, problem: dict | str) -> str:
    """The generation prompt (a string) exactly as evalplus's codegen builds it for this tokenizer."""
    from evalplus.provider.utility import make_raw_chat_prompt
    text = problem["problem"] if isinstance(problem, dict) else problem
    task_prompt = text.strip() + "\n"
    return make_raw_chat_prompt(task_prompt, INSTRUCTION_PREFIX, RESPONSE_PREFIX, tokenizer)


def is_chat(tokenizer) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def _fenced_blocks(text: str) -> list[tuple[str, str, bool]]:
    """(language, body, closed) of each ``` block, in order; an unterminated last block counts (closed=False)."""
    blocks, lang, body, inside = [], "", [], False
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith("```"):
            if inside:
                blocks.append((lang, "\n".join(body), True))
                inside, body = False, []
            else:
                inside, lang, body = True, s[3:].strip().lower(), []
            continue
        if inside:
            body.append(line)
    if inside and body:
        blocks.append((lang, "\n".join(body), False))
    return blocks


def extract_code(response: str, entry_point: str | None = None, prefilled: bool = True) -> str:
    """The code of a response before sanitising: the last fenced block defining ``entry_point`` (else the last
    block), or the whole text when there is no fence. ``prefilled``: the prompt opened a "```python" block."""
    prefilled = prefilled and not response.lstrip().startswith("```")   # the model may repeat the fence
    text = ("```python\n" + response) if prefilled else response
    blocks = [b for b in _fenced_blocks(text) if b[0] in ("", "python", "py", "python3")] or _fenced_blocks(text)
    if not blocks:
        return response
    if entry_point:
        for lang, body, _ in reversed(blocks):
            if f"def {entry_point}" in body:
                return body
    return blocks[-1][1]


def extract_solution(response: str, entry_point: str, *, prompt: str | None = None, chat: bool = True) -> str:
    """The sample's ``solution`` for evalplus: :func:`extract_code`, then evalplus's ``sanitize``. For a base
    model (``chat=False``) the completion continues ``prompt``, as in evalplus's direct-completion mode."""
    from evalplus.sanitize import sanitize
    code = extract_code(response, entry_point, prefilled=True) if chat else (prompt or "") + response
    try:
        return sanitize(code, entry_point)
    except Exception:   # tree-sitter / ast trouble on odd text: grade the unsanitised code rather than crash
        return code


# ----------------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------------

def evaluate_evalplus(dataset: str, data_path: str | Path, samples: list[dict], *, parallel: int | None = None,
                      min_time_limit: float = 1.0, gt_time_limit_factor: float = 4.0,
                      memory_bytes: int = AS_DEFAULT, cache_dir: str | Path | None = None,
                      workdir: str | Path | None = None, keep_workdir: bool = False, net_isolation: bool = True,
                      timeout: float | None = None, log=print) -> list[dict]:
    """Grade ``samples`` (``{id, sample, solution}``; ``id`` = evalplus task_id) with evalplus's ground truth and
    comparison, and return, in the same order, ``{id, sample, base, plus, base_status, plus_status}`` (statuses:
    pass / fail / timeout).

    Only the problems that have samples are evaluated (the override data file is restricted to them; with every
    problem present it is the release file byte for byte). ``min_time_limit`` and ``gt_time_limit_factor`` are
    evalplus's per-test time limit parameters (defaults = evalplus's); ``parallel``: programs run at once (default:
    the CPUs allocated to this job, :func:`prift.resources.allocated_cpus`)."""
    from prift.resources import allocated_cpus
    if dataset not in EVALPLUS_DATASETS:
        raise ValueError(f"not an evalplus dataset: {dataset!r} (known: {', '.join(EVALPLUS_DATASETS)})")
    ds, spec = dataset, EVALPLUS_DATASETS[dataset]
    records = read_evalplus_file(data_path)
    wanted = {s["id"] for s in samples}
    unknown = wanted - {r["task_id"] for r in records}
    if unknown:
        raise ValueError(f"samples for unknown {ds} task ids: {sorted(unknown)[:5]}")
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="prift-evalplus-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    assert_unreadable(data_path, work, cache)   # the answers must stay out of the sandbox's reach
    try:
        data_copy = work / f"{ds}-data.jsonl"
        with open(data_copy, "w", encoding="utf-8") as f:
            for r in records:
                if r["task_id"] in wanted:
                    f.write(json.dumps(r) + "\n")
        samples_file = work / "samples.jsonl"
        with open(samples_file, "w", encoding="utf-8") as f:
            for s in samples:
                f.write(json.dumps({"task_id": s["id"], "solution": s["solution"]}) + "\n")
        result_file = work / "verdicts.json"
        if result_file.exists():
            result_file.unlink()
        (work / "sandbox").mkdir(exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({spec["env"]: str(data_copy), "XDG_CACHE_HOME": str(cache), "TMPDIR": str(work / "sandbox"),
                    "EVALPLUS_MAX_MEMORY_BYTES": str(int(memory_bytes)), "OMP_NUM_THREADS": "1",
                    "TOKENIZERS_PARALLELISM": "false",
                    "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                                  + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))})
        env.pop("EVALPLUS_TIMEOUT_PER_TASK", None)   # evalplus 0.3.1 compares it (a str) with a float
        args = {"dataset": ds, "samples": str(samples_file), "out": str(result_file),
                "parallel": parallel or allocated_cpus(), "min_time_limit": min_time_limit,
                "gt_time_limit_factor": gt_time_limit_factor, "net_isolation": net_isolation,
                "sandbox_dir": str(work / "sandbox"), "lock": str(cache / "prift-groundtruth.lock")}
        cmd = [sys.executable, "-c", "from prift.codeeval import _worker; _worker()", json.dumps(args)]
        log(f"evalplus {ds}: {len(samples)} samples of {len(wanted)} problems, {args['parallel']} at a time "
            f"({describe_sandbox(net_isolation)})")
        with open(work / "evalplus.log", "w") as logf:
            proc = subprocess.run(cmd, env=env, cwd=work, stdout=logf, stderr=subprocess.STDOUT, timeout=timeout)
        if proc.returncode != 0 or not result_file.exists():
            tail = (work / "evalplus.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"evalplus evaluation failed (exit {proc.returncode}):\n{tail}")
        results = json.loads(result_file.read_text())
    finally:
        if own and not keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
    cursor: dict[str, int] = {}
    out = []
    for s, r in zip(samples, results, strict=True):
        i = cursor.get(s["id"], 0)
        cursor[s["id"]] = i + 1
        out.append({"id": s["id"], "sample": s.get("sample", i), "base": r["base_status"] == "pass",
                    "plus": r["base_status"] == "pass" and r["plus_status"] == "pass",
                    "base_status": r["base_status"], "plus_status": r["plus_status"]})
    return out


def _worker() -> None:  # pragma: no cover - runs in the evaluation subprocess
    """The grader's process: evalplus's problems and ground truth (expected outputs of the canonical solutions,
    cached by evalplus), then, for every sample and test set, the program runs in the sandbox's runner on the
    inputs and its outputs are judged here (:class:`prift.evalplus_judge.EvalplusJudge`). The expected outputs and
    the canonical solutions never leave this process; the runner gets the code, the inputs and a scrubbed
    environment."""
    import fcntl
    import importlib.util
    from concurrent.futures import ThreadPoolExecutor

    import evalplus.evaluate as EV
    from evalplus.eval import query_maximum_memory_bytes
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS as not_none

    from prift import sandbox
    from prift.evalplus_judge import EvalplusJudge
    args = json.loads(sys.argv[1])
    ds = args["dataset"]
    with open(args["lock"], "a") as lock:   # compute (or load) the cached ground truth once at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ds == "humaneval":
            from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash
            problems = get_human_eval_plus()
            expected = EV.get_groundtruth(problems, get_human_eval_plus_hash(), [])
        else:
            from evalplus.data import get_mbpp_plus, get_mbpp_plus_hash
            problems = get_mbpp_plus()
            expected = EV.get_groundtruth(problems, get_mbpp_plus_hash(), not_none)
        fcntl.flock(lock, fcntl.LOCK_UN)
    guard = str(Path(importlib.util.find_spec("evalplus").submodule_search_locations[0]) / "eval" / "utils.py")
    memory = query_maximum_memory_bytes()
    per_task = float(os.environ.get("EVALPLUS_TIMEOUT_PER_TASK", 60))
    with open(args["samples"], encoding="utf-8") as f:
        samples = [json.loads(line) for line in f if line.strip()]
    encoded = {(tid, which): sandbox.plain.dumps(problems[tid][f"{which}_input"])   # each test set's inputs, once
               for tid in {s["task_id"] for s in samples} for which in ("base", "plus")}

    def check(sample: dict, which: str) -> str:
        tid = sample["task_id"]
        problem, truth = problems[tid], expected[tid]
        limits = [max(args["min_time_limit"], args["gt_time_limit_factor"] * t) for t in truth[f"{which}_time"]]
        judge = EvalplusJudge(ds, problem["entry_point"], problem["atol"], problem[f"{which}_input"], truth[which])
        code = sample["solution"]
        r = sandbox.run_calls(code, problem["entry_point"], encoded[tid, which], limits, judge,
                              total_limit=min(per_task, sum(limits)) + 2, workdir=args["sandbox_dir"], guard=guard,
                              preload=[m for m in EVALPLUS_PRELOADED if m in code], memory_bytes=memory,
                              project="not_none" if ds == "mbpp" and problem["entry_point"] in not_none else "value",
                              net_isolation=args["net_isolation"])
        return r["status"]

    def one(sample: dict) -> dict:
        return {"base_status": check(sample, "base"), "plus_status": check(sample, "plus")}

    with ThreadPoolExecutor(max_workers=max(1, int(args["parallel"]))) as ex:
        verdicts = list(ex.map(one, samples))
    with open(args["out"], "w") as f:
        json.dump(verdicts, f)
    print(f"{ds}: {sum(v['base_status'] == 'pass' for v in verdicts)}/{len(verdicts)} base, "
          f"{sum(v['base_status'] == v['plus_status'] == 'pass' for v in verdicts)}/{len(verdicts)} plus", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# file-level glue (generation samples → grades)
# ----------------------------------------------------------------------------------------------------------------

def grade_evalplus_file(samples_path: str | Path, problems: list[dict], out: str | Path, *, dataset: str,
                        data_path: str | Path, chat: bool = True, log=print, **eval_kwargs) -> dict:
    """Grade a generation file (``{id, sample, text, finish_reason}`` lines) and write grades
    ``{id, sample, base, plus, base_status, plus_status, finish_reason, solution}``."""
    from prift.data import read_jsonl
    from prift.io import write_jsonl
    by_id = {p["id"]: p for p in problems}
    rows = read_jsonl(samples_path)
    samples = []
    for s in rows:
        p = by_id.get(s["id"])
        if p is None:
            raise ValueError(f"{samples_path}: sample for unknown problem id {s['id']!r}")
        samples.append({"id": s["id"], "sample": s["sample"],
                        "solution": extract_solution(s["text"], p["entry_point"], prompt=p["problem"], chat=chat)})
    verdicts = evaluate_evalplus(dataset, data_path, samples, log=log, **eval_kwargs)
    grades = [v | {"finish_reason": r.get("finish_reason"), "solution": s["solution"]}
              for v, r, s in zip(verdicts, rows, samples)]
    write_jsonl(out, grades)
    n = max(len(grades), 1)
    return {"samples": len(grades), "base": sum(g["base"] for g in grades) / n,
            "plus": sum(g["plus"] for g in grades) / n, "sandbox": describe_sandbox()}
