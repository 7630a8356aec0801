"""The sandbox's boundary (prift.sandbox): outputs cross as plain data and are judged outside; the runner sees a
scrubbed environment, reads nothing of the grader's, fills a bounded amount of disk; the judge keeps evalplus's
comparison; worker pools follow the job's CPU allocation.

These run the real runner (a ``python -I`` subprocess, ~0.1 s each) on tiny programs, without evalplus's data.
"""
from __future__ import annotations

import collections
import importlib.util
import math
import os
from concurrent import futures
from pathlib import Path

import numpy as np
import pytest

from prift import resources, sandbox
from prift.evalplus_judge import EvalplusJudge
from prift.sandbox import plain

GUARD = str(Path(importlib.util.find_spec("evalplus").submodule_search_locations[0]) / "eval" / "utils.py")


def run(code: str, inputs: list, expected: list, *, limits=None, total=10.0, judge=None, **kw) -> dict:
    """``f`` of ``code`` on ``inputs`` in the runner, judged by equality with ``expected`` (or ``judge``)."""
    work = kw.pop("workdir")
    judge = judge or (lambda i, out: out == expected[i])
    return sandbox.run_calls(code, "f", plain.dumps(inputs), limits or [5.0] * len(inputs), judge,
                             total_limit=total, workdir=work, **kw)


# ----------------------------------------------------------------------------------------------------------------
# plain data
# ----------------------------------------------------------------------------------------------------------------

ROUND_TRIP = [None, True, 0, -7, 2 ** 70_000, -(3 ** 40_000), 1.5, -0.0, math.inf, -math.inf, "x\ud800é", b"\x00b",
              1 - 2j, [1, [2.5, "a"]], (1, (2,)), (), {1: "a", (2, 3): [4], "k": None}, {1, 2.5, "s"},
              frozenset({(1, 2)}), collections.Counter("abca"), collections.OrderedDict(b=1, a=2),
              collections.defaultdict(None, {1: 2}), collections.deque([1, 2]), [(1, "a"), (2, "b")] * 3,
              list(range(100_000)), [0.1] * 100_000, np.float64(0.25), np.int32(-3), np.bool_(True),
              np.complex128(1 + 1j)]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: type(v).__name__)
def test_plain_data_round_trips_with_its_type(value):
    back = plain.loads(plain.dumps(value))
    assert type(back) is type(value)
    assert back == value
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_plain_data_keeps_nan_and_numpy_arrays():
    assert math.isnan(plain.loads(plain.dumps(math.nan)))
    arr = plain.loads(plain.dumps(np.array([[1.5, 2.0]], dtype=np.float32)))
    assert arr.dtype == np.float32 and arr.tolist() == [[1.5, 2.0]]


class AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class EqualInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def test_plain_data_refuses_objects_and_sends_subclasses_as_values():
    for bad in (AlwaysEqual(), [AlwaysEqual()], {1: AlwaysEqual()}, iter([1]), lambda: 1, np.array(["s"]),
                np.datetime64("2020-01-01")):
        with pytest.raises(plain.NotPlain):
            plain.dumps(bad)
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(plain.NotPlain):
        plain.dumps(cycle)
    # a subclass crosses as its builtin value: its __eq__ stays behind
    back = plain.loads(plain.dumps(EqualInt(7)))
    assert type(back) is int and back == 7 and back != 8
    point = collections.namedtuple("Point", "x y")
    assert plain.loads(plain.dumps(point(1, 2))) == (1, 2)


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": 2}',                          # an object is always a one-key tag
    '{"eval": "print(1)"}',                      # unknown tag
    '{"set": [[1], [2]]}',                       # unhashable set element
    '{"set": [' + ",".join(str(k * (2 ** 61 - 1)) for k in range(1, 200)) + "]}",   # a hash flood
    "[" * 200 + "]" * 200,                       # too deep
    "1" * 5000,                                  # a decimal int past Python's digit limit (hex is the way)
    '{"numpy": ["object", 1]}',                  # not a plain dtype
    '{"tuples": [[1, [2]]]}',
])
def test_plain_data_refuses_bad_encodings(text):
    with pytest.raises(plain.NotPlain):
        plain.loads(text)


# ----------------------------------------------------------------------------------------------------------------
# the runner: outputs judged outside, time limits
# ----------------------------------------------------------------------------------------------------------------

def test_outputs_are_judged_outside(tmp_path):
    assert run("def f(a, b):\n    return a + b\n", [[1, 2], [2 ** 5000, 1]], [3, 2 ** 5000 + 1],
               workdir=tmp_path)["status"] == "pass"
    wrong = run("def f(a, b):\n    return a - b\n", [[1, 2]], [3], workdir=tmp_path)
    assert (wrong["status"], wrong["detail"]["why"]) == ("fail", "wrong output")
    rich = run("class Yes:\n    def __eq__(self, o):\n        return True\ndef f(a, b):\n    return Yes()\n",
               [[1, 2]], [3], workdir=tmp_path)
    assert rich["status"] == "fail" and "not plain data" in rich["detail"]["why"]
    # the judge is never handed the program's object, only data
    seen = []
    run("class Yes(int):\n    def __eq__(self, o):\n        return True\ndef f(a, b):\n    return Yes(a)\n",
        [[1, 2]], [3], workdir=tmp_path, judge=lambda i, out: seen.append(type(out)) or True)
    assert seen == [int]


def test_time_limits_per_call_and_in_total(tmp_path):
    slow_call = run("import time\ndef f(x):\n    time.sleep(x)\n    return x\n", [[0], [3]], [0, 3],
                    limits=[1.0, 1.0], workdir=tmp_path)
    assert (slow_call["status"], slow_call["n_passed"]) == ("fail", 1)          # evalplus: a test past its limit
    slow_load = run("while True:\n    pass\ndef f(x):\n    return x\n", [[0]], [0], total=1.0, workdir=tmp_path)
    assert slow_load["status"] == "timeout"                                      # evalplus: the run past its limit
    died = run("import os\ndef f(x):\n    os._exit(0)\n", [[0]], [0], workdir=tmp_path)
    assert died["status"] == "timeout"                                           # evalplus: no verdict at all


def test_long_outputs_cross_in_chunks(tmp_path):
    n = 200_000
    exp = [(k, str(k)) for k in range(n)]
    code = "def f(n, bad):\n    out = [(k, str(k)) for k in range(n)]\n    if bad:\n        out[n - 7] = (0, '')\n" \
           "    return out\n"
    judge = EvalplusJudge("humaneval", "f", 0, [[n, False], [n, True]], [exp, exp])
    ok = run(code, [[n, False], [n, True]], [exp, exp], judge=judge, workdir=tmp_path)
    assert (ok["status"], ok["n_passed"]) == ("fail", 1) and ok["detail"]["test"] == 1
    floats = [k / 3 for k in range(300_000)]
    judge = EvalplusJudge("humaneval", "f", 0, [[0]], [floats])
    close = run("def f(x):\n    return [k / 3 + 1e-9 for k in range(300_000)]\n", [[0]], [floats], judge=judge,
                workdir=tmp_path)
    assert close["status"] == "pass"                        # evalplus's 1e-6 tolerance, chunk by chunk


# ----------------------------------------------------------------------------------------------------------------
# what the runner can reach
# ----------------------------------------------------------------------------------------------------------------

def test_environment_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIFT_SECRET_ANSWER", "42")
    code = "import os\ndef f():\n    return sorted(os.environ)\n"
    keys = sorted(sandbox.scrubbed_env("/x"))
    assert run(code, [[]], [keys], workdir=tmp_path)["status"] == "pass"
    assert "PRIFT_SECRET_ANSWER" not in keys and "HUMANEVAL_OVERRIDE_PATH" not in keys


@pytest.mark.parametrize("attempt", ["file", "listing", "parent_environ", "parent_mem"])
def test_grader_files_are_unreadable(tmp_path, attempt):
    secret = tmp_path / "answers" / "key.json"
    secret.parent.mkdir()
    secret.write_text('{"answer": 42}')
    code = {"file": f"import io\ndef f():\n    return io.FileIO({str(secret)!r}).read().decode()\n",
            "listing": f"import os\ndef f():\n    return os.listdir({str(secret.parent)!r})\n",
            "parent_environ": "import io, os\ndef f():\n    return io.FileIO(f'/proc/{os.getppid()}/environ').read()\n",
            "parent_mem": "import io, os\ndef f():\n    return io.FileIO(f'/proc/{os.getppid()}/maps').read()\n",
            }[attempt]
    r = run(code, [[]], [None], workdir=tmp_path, judge=lambda i, out: True)
    assert (r["status"], r["detail"]["why"]) == ("fail", "PermissionError"), r
    # the standard library stays readable
    assert run("import io, os\ndef f():\n    return len(io.FileIO(os.__file__).read()) > 0\n", [[]], [True],
               workdir=tmp_path)["status"] == "pass"


def test_grader_secrets_must_be_outside_the_read_roots():
    sandbox.assert_unreadable("/work/shared/data/code/x.jsonl.gz", Path.home() / ".cache")
    with pytest.raises(RuntimeError, match="readable by sandboxed programs"):
        sandbox.assert_unreadable(os.__file__)


WRITE = "def f(n, mb):\n    for k in range(n):\n        with open(f'w{k}', 'wb') as out:\n" \
        "            out.write(b'x' * (mb << 20))\n    return n\n"


@pytest.mark.parametrize("tmpfs", [True, False], ids=["tmpfs", "fsize+file-count"])
def test_disk_is_bounded(tmp_path, monkeypatch, tmpfs):
    if tmpfs and not sandbox.capabilities()["tmpfs"]:
        pytest.skip("no unprivileged mount namespace here")
    monkeypatch.setattr(sandbox, "_CAPS", sandbox.capabilities() | {"tmpfs": tmpfs})
    # 2 x 8 MiB fit; 12 x 8 MiB (96 MiB) do not (tmpfs: 64 MiB; otherwise at most 8 files of 16 MiB)
    r = run(WRITE, [[2, 8], [12, 8]], [2, 12], workdir=tmp_path)
    assert (r["status"], r["n_passed"]) == ("fail", 1), r
    assert r["detail"]["why"] in ("OSError", "PermissionError")
    big = run(WRITE, [[1, 20]], [1], workdir=tmp_path)                 # one file past RLIMIT_FSIZE (16 MiB)
    assert big["status"] == "fail"
    assert list(tmp_path.iterdir()) == []                               # every sample's directory is gone


# ----------------------------------------------------------------------------------------------------------------
# evalplus's comparison, outside
# ----------------------------------------------------------------------------------------------------------------

def judge_of(dataset, entry_point, atol, pairs):
    inputs = [inp for inp, _ in pairs]
    return EvalplusJudge(dataset, entry_point, atol, inputs, [exp for _, exp in pairs])


def test_judge_follows_evalplus_comparison():
    j = judge_of("humaneval", "f", 0, [([1], 0.3), ([2], [1.0, 2.0]), ([3], 5)])
    assert j(0, 0.1 + 0.2)                        # floats: evalplus enforces atol 1e-6
    assert not j(0, 0.31)
    assert j(1, [1.0, 2.0000001]) and not j(1, (1.0, 2.0))           # same type and length, then allclose
    assert j(2, 5) and j(2, 5.0) and not j(2, 5.0000001)              # atol stays 1e-6 once set (as in evalplus)
    assert not judge_of("humaneval", "f", 0, [([3], 5)])(0, 5.0000001)  # ... but is 0 for integers alone
    assert judge_of("humaneval", "f", 1e-4, [([1], 2.0)])(0, 2.00005)
    # special oracles
    assert judge_of("mbpp", "similar_elements", 0, [([1], (3, 4))])(0, [4, 3])
    assert not judge_of("mbpp", "similar_elements", 0, [([1], (3, 4))])(0, [4, 5])
    assert judge_of("mbpp", "check_str", 0, [(["a"], True)])(0, True)
    assert judge_of("mbpp", "are_equivalent", 0, [([1, 2], False)])(0, True)
    assert judge_of("mbpp", "sum_div", 0, [([7], 1)])(0, 0)
    # evalplus 0.3.1 never records a find_zero test as passed
    assert not judge_of("humaneval", "find_zero", 1e-4, [([[1, 1]], -1.0)])(0, -1.0)
    # set equality first refuses a hash flood
    flood = [k * (2 ** 61 - 1) for k in range(1, 200)]
    assert not judge_of("mbpp", "similar_elements", 0, [([1], flood)])(0, flood)


# ----------------------------------------------------------------------------------------------------------------
# worker pools from the job's allocation
# ----------------------------------------------------------------------------------------------------------------

def test_livecodebench_pool_is_sized_from_the_allocation(tmp_path, monkeypatch):
    from prift import lcb_judge
    from prift.io import write_jsonl
    sizes = []

    class Recording(futures.ThreadPoolExecutor):
        def __init__(self, max_workers=None, **kw):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)

    monkeypatch.setattr(futures, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(resources, "allocated_cpus", lambda environ=None: 3)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    write_jsonl(tmp_path / "s.jsonl", [{"id": "p", "sample": 0, "text": "no code"}])
    lcb_judge.grade_lcb_file(tmp_path / "s.jsonl", [{"id": "p", "public_test_cases": "[]"}], tmp_path / "g.jsonl",
                       log=lambda *_: None)
    assert sizes == [3]
