"""LiveCodeBench's verdict on a program: its tests run one by one in :mod:`prift.sandbox`, the outputs compared here.

Grading (:func:`grade_lcb`): public then private tests, stopping at the first failure, 6 s per test (LiveCodeBench's
default); the program runs with LiveCodeBench's star-import header and recursion limit, in the sandbox's runner
(:mod:`prift.sandbox`: a scrubbed environment, reads and writes confined, a tmpfs, an empty network namespace), which
gets the code and one test input at a time -- never an expected output -- and answers with the program's stdout or
return value (as plain data); the comparison happens here.  stdin problems: the program reads the input on its real
stdin; its stdout and the expected output are compared line by line after stripping, lines that differ must both
parse as whitespace-separated decimals and be equal as decimals.  Functional (LeetCode) problems:
``Solution().<func_name>(*args)`` with one JSON argument per input line; the return value (a top-level tuple counts
as a list) must equal the JSON-decoded expected output.  Differences from LiveCodeBench's in-process runner: each test
is a fresh process with real stdin (so ``sys.stdin.buffer`` and ``os.read(0)`` work); nested tuples are not equal to
lists (they are not in LiveCodeBench either); a return value that is not plain data (an object of the program's own
class) fails, where LiveCodeBench would call its ``__eq__``.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path

from prift import sandbox
from prift.livecodebench import TEST_TIMEOUT_S, extract_lcb_code, problem_tests


# ----------------------------------------------------------------------------------------------------------------
# output comparison
# ----------------------------------------------------------------------------------------------------------------

def _lines(s: str) -> list[str]:
    return [line.strip() for line in s.strip().split("\n")]


def _decimals(line: str):
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_matches(output: str, expected: str) -> bool:
    got, want = _lines(output), _lines(expected)
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        if da is None or db is None or da != db:
            return False
    return True


def result_matches(result: str | None, expected: str) -> bool:
    """Whether a functional test's return value (its plain-data encoding, from the sandbox) equals the JSON-decoded
    expected output; a top-level tuple counts as a list (as in LiveCodeBench). The value is rebuilt from trusted
    types only (:mod:`prift.sandbox.plain`), so the comparison never runs the program's code."""
    if not result:
        return False
    try:
        got = sandbox.plain.loads(result)
        want = json.loads(expected)
    except (ValueError, RecursionError):   # NotPlain, bad JSON
        return False
    if type(got) is tuple:
        got = list(got)
    try:
        return bool(got == want)
    except (TypeError, ValueError, RecursionError):
        return False


# ----------------------------------------------------------------------------------------------------------------
# grading
# ----------------------------------------------------------------------------------------------------------------

def _readline(proc: subprocess.Popen, buf: bytearray, deadline_s: float) -> bytes | None:
    import time
    end = time.monotonic() + deadline_s
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = end - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return None
        buf.extend(chunk)
    i = buf.index(b"\n")
    line = bytes(buf[:i])
    del buf[:i + 1]
    return line


def _stop(proc: subprocess.Popen) -> None:
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()


def grade_lcb(code: str, problem: dict, *, timeout: float = TEST_TIMEOUT_S,
              memory_bytes: int = sandbox.AS_DEFAULT, net_isolation: bool = True, tests: list[dict] | None = None,
              stop_at_first_failure: bool = True) -> dict:
    """Run ``code`` on the problem's tests in the sandbox. Returns ``{passed, status, n_tests, n_passed, detail}``;
    status: passed | wrong_answer | runtime_error | timeout | no_code | no_tests."""
    tests = problem_tests(problem) if tests is None else tests
    fn_name = problem.get("fn_name")
    if fn_name is None and problem.get("metadata"):
        meta = problem["metadata"]
        fn_name = (json.loads(meta) if isinstance(meta, str) else meta).get("func_name")
    mode = "call" if fn_name or any(t.get("testtype") == "functional" for t in tests) else "stdin"
    base = {"n_tests": len(tests), "n_passed": 0}
    if not code.strip():
        return base | {"passed": False, "status": "no_code", "detail": None}
    if not tests:
        return base | {"passed": False, "status": "no_tests", "detail": None}
    work = tempfile.mkdtemp(prefix="prift-lcb-")
    proc = subprocess.Popen(sandbox.runner_command("serve", work, net_isolation), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=sandbox.scrubbed_env(work),
                            cwd=work, start_new_session=True)
    buf = bytearray()
    status, detail, n_ok = "passed", None, 0
    try:
        setup = {"code": code, "mode": mode, "fn_name": fn_name, "timeout": timeout, "memory_bytes": memory_bytes,
                 **sandbox.disk_setup()}
        proc.stdin.write((json.dumps(setup) + "\n").encode())
        proc.stdin.flush()
        ready = _readline(proc, buf, 120)
        if ready is None or "ready" not in json.loads(ready):
            raise RuntimeError(f"sandbox runner did not start: {(ready or b'no answer').decode(errors='replace')}")
        for k, t in enumerate(tests):
            proc.stdin.write((json.dumps({"input": t["input"]}) + "\n").encode())
            proc.stdin.flush()
            line = _readline(proc, buf, timeout + 30)
            if line is None:
                status, detail = "timeout", {"test": k, "why": "runner did not answer"}
                break
            reply = json.loads(line)
            if reply["status"] == "timeout":
                status, detail = "timeout", {"test": k}
            elif reply["status"] != "ok":
                status, detail = "runtime_error", {"test": k, "stderr": reply.get("stderr", "")[-500:],
                                                   "exit": reply.get("exit"), "signal": reply.get("signal")}
            elif not (result_matches(reply.get("result"), t["output"]) if mode == "call"
                      else stdout_matches(reply.get("stdout", ""), t["output"])):
                status, detail = "wrong_answer", {"test": k}
            else:
                n_ok += 1
                continue
            if stop_at_first_failure:
                break
    except (BrokenPipeError, OSError) as e:
        status, detail = "runtime_error", {"why": f"runner: {e}"}
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    passed = status == "passed" and n_ok == len(tests)
    return base | {"passed": passed, "status": status, "n_passed": n_ok, "detail": detail}


def grade_lcb_file(samples_path: str | Path, problems: list[dict], out: str | Path, *, parallel: int | None = None,
                   timeout: float = TEST_TIMEOUT_S, log=print, **kwargs) -> dict:
    """Grade a generation file (``{id, sample, text, finish_reason}``) and write grades
    ``{id, sample, passed, status, n_tests, n_passed, finish_reason}``. ``parallel``: programs run at once (default:
    the CPUs allocated to this job, :func:`prift.resources.allocated_cpus`)."""
    from concurrent.futures import ThreadPoolExecutor
    from prift.data import read_jsonl
    from prift.io import write_jsonl
    from prift.resources import allocated_cpus
    by_id = {p["id"]: p for p in problems}
    rows = read_jsonl(samples_path)
    for s in rows:
        if s["id"] not in by_id:
            raise ValueError(f"{samples_path}: sample for unknown problem id {s['id']!r}")
    tests = {}

    def one(s):
        p = by_id[s["id"]]
        if s["id"] not in tests:
            tests[s["id"]] = problem_tests(p)
        g = grade_lcb(extract_lcb_code(s["text"]), p, timeout=timeout, tests=tests[s["id"]], **kwargs)
        return {"id": s["id"], "sample": s["sample"], "passed": g["passed"], "status": g["status"],
                "n_tests": g["n_tests"], "n_passed": g["n_passed"], "finish_reason": s.get("finish_reason")}

    with ThreadPoolExecutor(max_workers=parallel or allocated_cpus()) as ex:
        grades = list(ex.map(one, rows))
    write_jsonl(out, grades)
    n = max(len(grades), 1)
    stats = {"samples": len(grades), "passed": sum(g["passed"] for g in grades) / n,
             "sandbox": sandbox.describe(net_isolation=kwargs.get("net_isolation", True))}
    log(f"LiveCodeBench graded: {stats}")
    return stats
