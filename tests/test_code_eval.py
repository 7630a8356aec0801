"""Code benchmarks: HumanEval+ / MBPP+ through evalplus's own evaluation, LiveCodeBench's loader and grader, and
the sandbox every model-written program runs in.

Real data: ``data/code`` (HumanEval+ v0.1.10, MBPP+ v0.2.0). Two evalplus runs per session (all 164
HumanEval+ problems; a deterministic 80-problem subset of MBPP+), each carrying the canonical solutions, hand-made
wrong solutions and the hostile samples, so that evalplus computes its ground truth once per data file.  The runs
use evalplus's time-limit factor 20 instead of 4 so that a loaded test machine does not turn slow canonical
solutions into timeouts (with the default 4, this 2-core machine under load timed out HumanEval/83 or /139 and
MBPP/255, 389, 392, 599 -- evalplus's own CLI does the same).
"""
from __future__ import annotations

import base64
import json
import os
import pickle
import random
import socket
import threading
import zlib
from pathlib import Path

import pytest

from prift import codeeval, lcb_judge, livecodebench as lcb, sandbox
from prift.benchmarks import KINDS, verdict_metrics

FACTOR = 20.0


@pytest.fixture(scope="session")
def he_path(eval_data) -> Path:
    return eval_data / "code" / "HumanEvalPlus-v0.1.10.jsonl.gz"


@pytest.fixture(scope="session")
def mbpp_path(eval_data) -> Path:
    return eval_data / "code" / "MbppPlus-v0.2.0.jsonl.gz"


@pytest.fixture(scope="session")
def evalplus_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evalplus-cache")


@pytest.fixture(scope="session")
def canary(tmp_path_factory) -> Path:
    """A directory outside every sandbox root that hostile samples try to destroy."""
    d = tmp_path_factory.mktemp("canary")
    (d / "precious.txt").write_text("keep me")
    return d


class Listener:
    """A TCP server on the host's loopback that records any connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="session")
def listener():
    lis = Listener()
    yield lis
    lis.close()


def hostile(canary: Path, port: int) -> dict[str, str]:
    """Statements a sample runs before doing its job; each must make the sample fail in the sandbox."""
    c = str(canary)
    return {
        "rmtree": f"shutil.rmtree({c!r})",
        "os_remove": f"os.remove({c + '/precious.txt'!r})",
        "posix_unlink": f"posix.unlink({c + '/precious.txt'!r})",
        "overwrite": f"open({c + '/precious.txt'!r}, 'w').write('gone')",
        "os_open_write": f"posix.open({c + '/precious.txt'!r}, os.O_WRONLY | os.O_TRUNC)",
        "rename": f"posix.rename({c + '/precious.txt'!r}, {c + '/moved.txt'!r})",
        "fork_loop": "while True:\n    os.fork()",
        "posix_fork_loop": "for _ in range(64):\n    if posix.fork() == 0:\n        posix._exit(0)",
        "subprocess": "subprocess.run(['true'])",
        "loop": "while True:\n    pass",
        "loop_swallowing": "while True:\n    try:\n        pass\n    except BaseException:\n        pass",
        "alloc_10gb": "x = bytearray(10 * 1024 ** 3)",
        "socket": f"socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')",
        "kill_parent": "os.kill(os.getppid(), 9)",
    }


IMPORTS = "import os, posix, shutil, socket, subprocess\n"


def _indent(stmt: str, pad: str = "    ") -> str:
    return "".join(pad + line + "\n" for line in stmt.split("\n"))


def _canary_intact(canary: Path) -> None:
    assert sorted(p.name for p in canary.iterdir()) == ["precious.txt"]
    assert (canary / "precious.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------------------------------------------
# HumanEval+: one run with canonical, wrong and hostile samples
# ----------------------------------------------------------------------------------------------------------------

HE_WRONG = {   # hand-made, plausible but wrong
    "HumanEval/0": "def has_close_elements(numbers, threshold):\n    return False\n",
    "HumanEval/2": "def truncate_number(number):\n    return number\n",
    "HumanEval/13": "def greatest_common_divisor(a, b):\n    return min(a, b)\n",
    "HumanEval/23": "def strlen(string):\n    return len(string) - 1\n",
}
HE_HOSTILE_TASK = "HumanEval/0"
HE_SKIP_HOSTILE = {"loop_swallowing"}   # evalplus's own join timeout (up to 60 s per test set): tested on LCB

H0 = "def has_close_elements(numbers, threshold):\n"
# the canonical solution of HumanEval/0 found in the data file's text (read once, at import: only the task's total
# time limit applies there), then answering with it
CANONICAL_0 = ("for line in text.splitlines():\n"
               "    r = json.loads(line)\n"
               "    if r['task_id'] == 'HumanEval/0':\n"
               "        exec(r['prompt'] + r['canonical_solution'])\n")


def cheats(data_path: Path, cache_dir: Path) -> dict[str, tuple[str, str]]:
    """Samples that try to pass without solving the problem, by reaching the checker from inside: ``name: (task,
    solution)``. Each must fail. (evalplus's guard sets ``open`` to None, hence ``io.FileIO``.)"""
    environ = ("env = io.FileIO(f'/proc/{os.getppid()}/environ').read().decode().split('\\0')\n"
               "path = [e.split('=', 1)[1] for e in env if e.startswith('HUMANEVAL_OVERRIDE_PATH=')][0]\n")
    return {
        # rich objects: an output whose comparison is always true
        "rich_eq": ("HumanEval/0", "class Yes:\n    def __eq__(self, other):\n        return True\n"
                                   "    __hash__ = object.__hash__\n" + H0 + "    return Yes()\n"),
        "rich_int_subclass": ("HumanEval/0", "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                                             "    __hash__ = int.__hash__\n" + H0 + "    return Yes(7)\n"),
        # stack / frame tampering: the checker's expected outputs, or its verdict state, from the caller's frame
        "frame_expected": ("HumanEval/0", "import sys\n" + H0 + "    f = sys._getframe(1)\n"
                           "    while f is not None and 'expected' not in f.f_locals:\n        f = f.f_back\n"
                           "    return f.f_locals['expected'][f.f_locals['i']]\n"),
        "frame_verdict": ("HumanEval/0", "import os, sys\n" + H0 + "    f = sys._getframe(1)\n"
                          "    while f is not None and 'stat' not in f.f_locals:\n        f = f.f_back\n"
                          "    v = f.f_locals\n    for k in range(len(v['inputs'])):\n        v['details'][k] = True\n"
                          "    v['progress'].value = len(v['inputs'])\n    v['stat'].value = 0\n    os._exit(0)\n"),
        # monkey-patching the comparison's libraries
        "patch_numpy_allclose": ("HumanEval/2", "import numpy\nnumpy.allclose = lambda *a, **k: True\n"
                                                "def truncate_number(number):\n    return 0.0\n"),
        # reading the answer key: the data file (canonical solutions) by its path, through the environment, through
        # the parent's /proc entry; the ground-truth cache (expected outputs)
        "read_data_file": ("HumanEval/0", "import io, json, zlib\n"
                           f"text = zlib.decompress(io.FileIO({str(data_path)!r}).read(), 31).decode()\n"
                           + CANONICAL_0),
        "read_env_override": ("HumanEval/0", "import io, json, os\n"
                              "text = io.FileIO(os.environ['HUMANEVAL_OVERRIDE_PATH']).read().decode()\n"
                              + CANONICAL_0),
        "read_parent_environ": ("HumanEval/0", "import io, json, os\n" + environ
                                + "text = io.FileIO(path).read().decode()\n" + CANONICAL_0),
        "read_groundtruth_cache": ("HumanEval/0", "import glob, io, pickle\n"
                                   f"(path,) = glob.glob({str(cache_dir) + '/**/*.pkl'!r}, recursive=True)\n"
                                   "truth = pickle.loads(io.FileIO(path).read())['HumanEval/0']['base']\n"
                                   "calls = []\n" + H0 + "    calls.append(1)\n"
                                   "    return truth[len(calls) - 1]   # the base tests pass, in order\n"),
    }


@pytest.fixture(scope="session")
def he_run(he_path, evalplus_cache, canary, listener):
    problems = {r["task_id"]: r for r in codeeval.read_evalplus_file(he_path)}
    samples, kinds = [], []
    for tid, r in problems.items():
        samples.append({"id": tid, "solution": r["prompt"] + r["canonical_solution"]})
        kinds.append(("canonical", tid))
    for tid in list(problems)[::10]:
        samples.append({"id": tid, "solution": f"def {problems[tid]['entry_point']}(*args, **kwargs):\n"
                                               "    raise NotImplementedError\n"})
        kinds.append(("stub", tid))
    for tid, code in HE_WRONG.items():
        samples.append({"id": tid, "solution": code})
        kinds.append(("wrong", tid))
    p = problems[HE_HOSTILE_TASK]
    for name, stmt in ({"control": "x = 1"} | hostile(canary, listener.port)).items():
        if name in HE_SKIP_HOSTILE:
            continue
        samples.append({"id": HE_HOSTILE_TASK,
                        "solution": IMPORTS + p["prompt"] + _indent(stmt) + p["canonical_solution"]})
        kinds.append(("hostile", name))
    for name, (tid, code) in cheats(he_path, evalplus_cache).items():
        samples.append({"id": tid, "solution": code})
        kinds.append(("cheat", name))
    counts: dict[str, int] = {}
    for s in samples:
        s["sample"] = counts.get(s["id"], 0)
        counts[s["id"]] = s["sample"] + 1
    verdicts = codeeval.evaluate_evalplus("humaneval", he_path, samples, gt_time_limit_factor=FACTOR,
                                          cache_dir=evalplus_cache, parallel=2, log=lambda *_: None)
    return list(zip(kinds, verdicts))


def test_humaneval_canonical_solutions_pass_as_evalplus_reports(he_run):
    canon = [v for (k, _), v in he_run if k == "canonical"]
    assert len(canon) == 164
    # evalplus 0.3.1's find_zero oracle `continue`s before recording a pass: HumanEval/32 fails for every
    # solution, the canonical one included (base 163/164 = 99.39 %, plus likewise), as evalplus's own CLI reports
    assert {v["id"] for v in canon if not v["base"]} == {"HumanEval/32"}
    assert {v["id"] for v in canon if not v["plus"]} == {"HumanEval/32"}


def test_humaneval_wrong_solutions_score_zero(he_run):
    wrong = [v for (k, _), v in he_run if k in ("stub", "wrong")]
    assert len(wrong) == 17 + len(HE_WRONG)
    assert not any(v["base"] or v["plus"] for v in wrong)


@pytest.mark.parametrize("name", ["control"] + [n for n in hostile(Path("/x"), 1) if n not in HE_SKIP_HOSTILE])
def test_humaneval_hostile_samples_fail_and_change_nothing(he_run, canary, listener, name):
    (v,) = [v for (k, n), v in he_run if k == "hostile" and n == name]
    if name == "control":   # the same canonical solution with a harmless statement passes
        assert v["base"] and v["plus"]
    else:
        assert not v["base"] and not v["plus"], v
    _canary_intact(canary)
    assert listener.connections == 0


@pytest.mark.parametrize("name", list(cheats(Path("/x"), Path("/y"))))
def test_humaneval_samples_cannot_reach_the_checker(he_run, name):
    """Rich objects, frame tampering, patched comparison libraries, the answer key read from files, the environment
    or /proc: each passed when evalplus checked outputs in the program's own process; each fails now that the
    program only hands out plain data and the grader compares (see prift.sandbox)."""
    (v,) = [v for (k, n), v in he_run if k == "cheat" and n == name]
    assert not v["base"] and not v["plus"], v


# ----------------------------------------------------------------------------------------------------------------
# MBPP+: a deterministic 80-problem subset
# ----------------------------------------------------------------------------------------------------------------

MBPP_LOOP_TASK = "Mbpp/793"   # 3 base inputs, no plus input: a top-level endless loop costs ~7 s of evalplus time


@pytest.fixture(scope="session")
def mbpp_run(mbpp_path, evalplus_cache):
    rows = codeeval.read_evalplus_file(mbpp_path)
    assert len(rows) == 378
    order = {r["task_id"]: i for i, r in enumerate(rows)}
    subset = sorted(random.Random(0).sample(rows, 80), key=lambda r: order[r["task_id"]])
    samples, kinds = [], []
    for r in subset:
        samples.append({"id": r["task_id"], "sample": 0, "solution": r["prompt"] + r["canonical_solution"]})
        kinds.append("canonical")
    for r in subset[::16]:
        samples.append({"id": r["task_id"], "sample": 1,
                        "solution": f"def {r['entry_point']}(*args):\n    return None\n"})
        kinds.append("wrong")
    loop = next(r for r in rows if r["task_id"] == MBPP_LOOP_TASK)
    samples.append({"id": MBPP_LOOP_TASK, "sample": 5, "solution": "while True:\n    pass\n" + loop["canonical_solution"]})
    kinds.append("toplevel_loop")
    verdicts = codeeval.evaluate_evalplus("mbpp", mbpp_path, samples, gt_time_limit_factor=FACTOR,
                                          cache_dir=evalplus_cache, parallel=2, log=lambda *_: None)
    return list(zip(kinds, verdicts))


def test_mbpp_canonical_solutions_pass(mbpp_run):
    canon = [v for k, v in mbpp_run if k == "canonical"]
    assert len(canon) == 80
    assert all(v["base"] and v["plus"] for v in canon), [v for v in canon if not v["plus"]]


def test_mbpp_wrong_and_endless_samples_fail(mbpp_run):
    bad = [v for k, v in mbpp_run if k != "canonical"]
    assert len(bad) == 6
    assert not any(v["base"] or v["plus"] for v in bad)
    (loop,) = [v for k, v in mbpp_run if k == "toplevel_loop"]
    assert loop["base_status"] == "timeout"


# ----------------------------------------------------------------------------------------------------------------
# prompts, extraction, the file glue
# ----------------------------------------------------------------------------------------------------------------

def test_evalplus_prompt_is_evalplus_chat_prompt(tiny_backbone, he_path):
    from prift.backbone import load_tokenizer
    tok = load_tokenizer(str(tiny_backbone))
    (p,) = codeeval.load_evalplus_problems(he_path, ["HumanEval/0"])
    text = codeeval.evalplus_prompt(tok, p)
    assert codeeval.INSTRUCTION_PREFIX in text and codeeval.RESPONSE_PREFIX in text
    assert f"```\n{p['problem'].strip()}\n```" in text
    assert text.endswith("```python\n") and "<|im_start|>assistant\n" in text
    assert len(codeeval.load_evalplus_problems(he_path)) == 164


SOLUTION_0 = ("def has_close_elements(numbers, threshold):\n"
              "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")


def test_extraction_takes_the_block_defining_the_entry_point():
    # a prefilled chat answer: code, closing fence, prose, then a usage example block
    resp = ("from typing import List\n\n" + SOLUTION_0 + "```\n\nThis compares all pairs.\n\n"
            "```python\nprint(has_close_elements([1.0, 2.0], 0.5))\n```\n")
    sol = codeeval.extract_solution(resp, "has_close_elements", prompt="")
    assert "def has_close_elements" in sol and "print(" not in sol and "This compares" not in sol
    assert codeeval.extract_code("no fences at all", "f") == "no fences at all"
    assert codeeval.extract_code("x = 1\n```\n\n```python\ndef f():\n    return 2\n```", "f") == \
        "def f():\n    return 2"
    # unterminated block (generation cut at the token limit)
    assert codeeval.extract_code("def f():\n    return 3\n", "f") == "def f():\n    return 3\n"
    # a model that repeats the opened fence
    assert codeeval.extract_code("```python\ndef f():\n    return 4\n```\n", "f") == "def f():\n    return 4"


def test_grade_evalplus_file_and_metrics(he_path, evalplus_cache, tmp_path, monkeypatch):
    from prift import resources
    from prift.io import write_jsonl
    monkeypatch.setattr(resources, "allocated_cpus", lambda environ=None: 3)   # the job's CPUs, not the node's
    lines = []
    problems = codeeval.load_evalplus_problems(he_path, ["HumanEval/0", "HumanEval/2"])
    texts = {("HumanEval/0", 0): SOLUTION_0 + "```\nDone.",
             ("HumanEval/0", 1): "def has_close_elements(numbers, threshold):\n    return True\n```",
             ("HumanEval/2", 0): "def truncate_number(number: float) -> float:\n    return number % 1.0\n```",
             ("HumanEval/2", 1): "I cannot solve this."}
    write_jsonl(tmp_path / "samples.jsonl", [{"id": i, "sample": s, "text": t, "finish_reason": "stop"}
                                             for (i, s), t in texts.items()])
    stats = codeeval.grade_evalplus_file(tmp_path / "samples.jsonl", problems, tmp_path / "grades.jsonl",
                                         dataset="humaneval", data_path=he_path, cache_dir=evalplus_cache,
                                         gt_time_limit_factor=FACTOR, log=lines.append)
    assert stats | {"sandbox": None} == {"samples": 4, "base": 0.5, "plus": 0.5, "sandbox": None}
    assert "audit-hook" in stats["sandbox"]
    assert "3 at a time" in lines[0]
    recs = verdict_metrics(tmp_path / "grades.jsonl", {"benchmark": "humaneval_plus"}, KINDS["evalplus"].verdicts,
                           n_boot=200)
    assert [(r["metric"], r["value"], r["n_problems"]) for r in recs] == [("pass@1", 50.0, 2), ("pass@1:base", 50.0, 2)]


# ----------------------------------------------------------------------------------------------------------------
# LiveCodeBench
# ----------------------------------------------------------------------------------------------------------------

def _compress(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _record(qid, date, content, tests_public, tests_private, starter="", func=None, compress=True):
    return {"question_title": qid, "question_content": content, "platform": "leetcode" if func else "atcoder",
            "question_id": qid, "contest_id": "c1", "contest_date": f"{date}T00:00:00", "starter_code": starter,
            "difficulty": "easy", "public_test_cases": json.dumps(tests_public),
            "private_test_cases": _compress(tests_private) if compress else json.dumps(tests_private),
            "metadata": json.dumps({"func_name": func} if func else {})}


def _stdin(i, o):
    return {"input": i, "output": o, "testtype": "stdin"}


def _call(i, o):
    return {"input": i, "output": o, "testtype": "functional"}


SUM = _record("abc_sum", "2024-09-14", "Print A+B.", [_stdin("1 2\n", "3\n")],
              [_stdin("-5 5\n", "0\n"), _stdin("100000000000 1\n", "100000000001")])
MEAN = _record("abc_mean", "2025-01-31", "Print the mean of N integers.", [_stdin("2\n2 3\n", "2.5\n")],
               [_stdin("3\n1 1 1\n", "1.000000\n"), _stdin("1\n7\n", "7\n")], compress=False)
TWOSUM = _record("two-sum", "2025-03-02", "Return the indices of the two numbers adding to target.",
                 [_call("[2,7,11,15]\n9", "[0, 1]")], [_call("[3,2,4]\n6", "[1, 2]"), _call("[3,3]\n6", "[0, 1]")],
                 starter="class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
                 func="twoSum")
SUM_OK = "a, b = map(int, input().split())\nprint(a + b)\n"
MEAN_OK = "import sys\ndata = sys.stdin.buffer.read().split()\nn = int(data[0])\nprint(sum(map(int, data[1:n+1])) / n)\n"
TWOSUM_OK = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
             "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
             "                return seen[target - x], i\n            seen[x] = i\n")


def test_lcb_test_decoding_and_safe_unpickling():
    tests = lcb.problem_tests(SUM)
    assert [t["output"] for t in tests] == ["3\n", "0\n", "100000000001"]

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/prift-pwned",))
    payload = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError):
        lcb.decode_tests(payload)
    assert not Path("/tmp/prift-pwned").exists()


def test_lcb_loader_record_fields(tmp_path):
    """The loader's record mapping (release tags and counts: tests/test_livecodebench.py)."""
    (tmp_path / "test2.jsonl").write_text(json.dumps(TWOSUM) + "\n" + json.dumps(SUM) + "\n")
    got = lcb.load_lcb_problems(tmp_path, "v2", log=lambda *_: None)
    by_id = {p["id"]: p for p in got}
    assert set(by_id) == {"abc_sum", "two-sum"}
    assert by_id["two-sum"]["fn_name"] == "twoSum" and by_id["abc_sum"]["fn_name"] is None
    assert by_id["two-sum"]["starter_code"] == TWOSUM["starter_code"]
    assert lcb.problem_tests(by_id["abc_sum"]) == lcb.problem_tests(SUM)


def test_lcb_prompt_and_extraction():
    user = lcb.lcb_user_prompt({"problem": "Q?", "starter_code": TWOSUM["starter_code"]})
    assert user.startswith("### Question:\nQ?\n\n### Format: You will use the following starter code")
    assert user.endswith("### Answer: (use the provided format with backticks)\n\n")
    assert "Read the inputs from stdin" in lcb.lcb_user_prompt({"problem": "Q?", "starter_code": ""})
    assert lcb.lcb_messages({"problem": "Q?"})[0]["role"] == "system"
    resp = "Plan:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone."
    assert lcb.extract_lcb_code(resp) == "print(2)"
    assert lcb.extract_lcb_code("print(3)") == ""


@pytest.mark.parametrize("problem,code,passed,status", [
    (SUM, SUM_OK, True, "passed"),
    (MEAN, MEAN_OK, True, "passed"),                      # decimals: 2.5 == 2.5, 1.0 == 1.000000, 7.0 == 7
    (TWOSUM, TWOSUM_OK, True, "passed"),                  # a returned tuple counts as a list
    (SUM, "a, b = map(int, input().split())\nprint(a - b)\n", False, "wrong_answer"),
    (SUM, "a, b = map(int, input().split())\nprint(a + b)\nprint()\nprint(0)\n", False, "wrong_answer"),
    (MEAN, "print('2.50001')\n", False, "wrong_answer"),
    (SUM, "print(1 / 0)\n", False, "runtime_error"),
    (TWOSUM, "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n", False, "wrong_answer"),
    (TWOSUM, "", False, "no_code"),
])
def test_lcb_grader(problem, code, passed, status):
    g = lcb_judge.grade_lcb(code, problem, timeout=3)
    assert (g["passed"], g["status"]) == (passed, status), g
    assert g["n_tests"] == 3


@pytest.mark.parametrize("name", list(hostile(Path("/x"), 1)))
def test_lcb_hostile_programs_fail_and_change_nothing(name, canary, listener):
    stmt = hostile(canary, listener.port)[name]
    code = IMPORTS + stmt + "\n" + SUM_OK
    # the host's network is reachable here (no namespace): the in-process layers must stop the socket
    g = lcb_judge.grade_lcb(code, SUM, timeout=2, net_isolation=False)
    assert not g["passed"] and g["status"] in ("runtime_error", "timeout"), g
    _canary_intact(canary)
    assert listener.connections == 0


NINE = _record("abc_nine", "2024-10-01", "Print A+B.", [_stdin("4 5\n", "9\n")], [])
LCB_CHEATS = {   # each prints the expected output it found somewhere it must not reach
    "answer_file": "import json\nprint(json.load(open('ANSWERS'))['abc_nine'])\n",
    "environment": "import os\nprint(os.environ.get('PRIFT_ANSWER'))\n",
    "grader_memory": (   # the grading process (the runner's parent) holds the expected outputs
        "import os, re\n"
        "grader = int(open(f'/proc/{os.getppid()}/status').read().split('PPid:')[1].split()[0])\n"
        "mem = open(f'/proc/{grader}/mem', 'rb', 0)\n"
        "for line in open(f'/proc/{grader}/maps'):\n"
        "    lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "    if 'r' not in line.split()[1] or hi - lo > 1 << 28:\n"
        "        continue\n"
        "    try:\n"
        "        mem.seek(lo)\n"
        "        m = re.search(rb'PRIFT-ANSWER<([0-9]+)>', mem.read(hi - lo))\n"
        "    except OSError:\n"
        "        continue\n"
        "    if m:\n"
        "        print(m.group(1).decode())\n"
        "        break\n"),
}


@pytest.mark.parametrize("net_isolation", [True, False], ids=["netns", "host-net"])
@pytest.mark.parametrize("name", list(LCB_CHEATS))
def test_lcb_programs_cannot_reach_the_answers(name, net_isolation, tmp_path, monkeypatch):
    """The expected output sits in a file of the grader's, in its environment and in its memory; the program can
    read none of them (a scrubbed environment, reads confined to the Python installation: no /proc)."""
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"abc_nine": "9"}))
    monkeypatch.setenv("PRIFT_ANSWER", "9")
    secret = "PRIFT-ANSWER<" + str(4 + 5) + ">"   # built at run time: only in this process's memory
    g = lcb_judge.grade_lcb(LCB_CHEATS[name].replace("ANSWERS", str(answers)), NINE, timeout=5, net_isolation=net_isolation)
    assert not g["passed"], g
    assert secret and lcb_judge.grade_lcb("print(9)\n", NINE, timeout=5, net_isolation=net_isolation)["passed"]


def test_lcb_rich_return_value_fails():
    """A return value whose ``__eq__`` is always true is not plain data: it never reaches a comparison."""
    code = ("class Yes(list):\n    def __eq__(self, other):\n        return True\n"
            "class Solution:\n    def twoSum(self, nums, target):\n        return Yes([7])\n")
    assert lcb_judge.grade_lcb(code, TWOSUM, timeout=3)["status"] == "wrong_answer"
    code = ("class Yes:\n    def __eq__(self, other):\n        return True\n"
            "class Solution:\n    def twoSum(self, nums, target):\n        return Yes()\n")
    assert not lcb_judge.grade_lcb(code, TWOSUM, timeout=3)["passed"]


def test_lcb_control_program_passes_without_network_namespace():
    assert lcb_judge.grade_lcb(IMPORTS + "x = 1\n" + SUM_OK, SUM, timeout=2, net_isolation=False)["passed"]


def test_grade_lcb_file(tmp_path):
    from prift.io import write_jsonl
    problems = [{"id": r["question_id"], "problem": r["question_content"], "starter_code": r["starter_code"],
                 "fn_name": json.loads(r["metadata"]).get("func_name"), "public_test_cases": r["public_test_cases"],
                 "private_test_cases": r["private_test_cases"]} for r in (SUM, TWOSUM)]
    write_jsonl(tmp_path / "s.jsonl", [
        {"id": "abc_sum", "sample": 0, "text": f"```python\n{SUM_OK}```"},
        {"id": "abc_sum", "sample": 1, "text": "print(3)"},
        {"id": "two-sum", "sample": 0, "text": f"Here:\n```python\n{TWOSUM_OK}```\n"},
        {"id": "two-sum", "sample": 1, "text": "```python\nclass Solution: pass\n```"}])
    stats = lcb_judge.grade_lcb_file(tmp_path / "s.jsonl", problems, tmp_path / "g.jsonl", parallel=2, log=lambda *_: None)
    assert (stats["samples"], stats["passed"]) == (4, 0.5) and "audit-hook" in stats["sandbox"]
    recs = verdict_metrics(tmp_path / "g.jsonl", {}, KINDS["livecodebench"].verdicts, n_boot=100)
    assert recs[0]["metric"] == "pass@1" and recs[0]["value"] == 50.0


# ----------------------------------------------------------------------------------------------------------------
# each kernel layer on its own (where this machine has it)
# ----------------------------------------------------------------------------------------------------------------

def _in_confined_child(root: Path, action, **layers) -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - child
        os.close(r)
        try:
            os.chdir(root)
            sandbox.confine(str(root), cpu_seconds=10, **layers)
            action()
            msg = "allowed"
        except BaseException as e:
            msg = type(e).__name__
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out


def test_kernel_layers_alone(tmp_path, canary):
    import posix
    caps = sandbox.capabilities()
    root = tmp_path / "root"
    root.mkdir()
    target = str(canary / "precious.txt")
    if caps["landlock_abi"] >= 1:
        only_landlock = dict(audit=False, seccomp=False)
        assert _in_confined_child(root, lambda: posix.unlink(target), **only_landlock) == "PermissionError"
        assert _in_confined_child(root, lambda: open(target, "w"), **only_landlock) == "PermissionError"
        assert _in_confined_child(root, lambda: open(root / "mine.txt", "w").write("ok"), **only_landlock) == "allowed"
    if caps["landlock_abi"] >= 1:   # reads, too, only beneath the root and the read roots
        only_landlock = dict(audit=False, seccomp=False)
        assert _in_confined_child(root, lambda: open(target).read(), **only_landlock) == "PermissionError"
        assert _in_confined_child(root, lambda: os.listdir(canary), **only_landlock) == "PermissionError"
        assert _in_confined_child(root, lambda: open(os.__file__).read(), **only_landlock) == "allowed"
    only_hook = dict(landlock=False, seccomp=False)
    assert _in_confined_child(root, lambda: open(target).read(), **only_hook) == "PermissionError"
    assert _in_confined_child(root, lambda: os.listdir(canary), **only_hook) == "PermissionError"
    assert _in_confined_child(root, lambda: open(f"/proc/{os.getppid()}/environ", "rb").read(),
                              **only_hook) == "PermissionError"
    assert _in_confined_child(root, lambda: open(os.__file__).read(), **only_hook) == "allowed"
    if caps["seccomp"]:
        only_seccomp = dict(audit=False, landlock=False)
        assert _in_confined_child(root, lambda: posix.fork(), **only_seccomp) == "PermissionError"
        assert _in_confined_child(root, lambda: socket.socket(), **only_seccomp) == "PermissionError"
        assert _in_confined_child(root, lambda: posix.kill(os.getppid(), 0), **only_seccomp) == "PermissionError"
        assert _in_confined_child(root, lambda: threading.Thread(target=int).start(), **only_seccomp) == "allowed"
    _canary_intact(canary)
