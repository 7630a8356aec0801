"""LiveCodeBench (code generation scenario) v5 / v6: loading the hub's jsonl shards, the prompt and the code
extraction; the grader with LiveCodeBench's semantics is :mod:`prift.lcb_judge`.

Which problems "v5" and "v6" are (published numbers disagree: DeepSeek-R1 reports a 2024-08..2025-01 window,
Qwen3 2024-10..2025-02 for "v5" and 2025-02..2025-05 for "v6"): here LiveCodeBench's own cumulative release tags,
``release_v5`` (880 problems, contest dates May 2023 - Jan 2025) and ``release_v6`` (1055 problems, May 2023 -
Apr 2025).  The evidence is the paper's own numbers: its LCB v5 / v6 scores are multiples of 1/880 and 1/1055,
the sizes of these two releases (one greedy sample per problem).

The problems live only on the hub (livecodebench/code_generation_lite, whose loader script fails with
datasets >= 4): read the shards directly.  Shard k holds the problems *added* by release k (:data:`LCB_SHARDS`:
test.jsonl 400 problems, test2.jsonl 111, test3.jsonl 101, test4.jsonl 101, test5.jsonl 167, test6.jsonl 175, so
that release_v1..v6 hold 400, 511, 612, 713, 880, 1055).  A version tag is LiveCodeBench's own grammar
(:func:`release_shards`): ``release_vN`` = shards 1..N, ``vN`` = shard N, ``vM_vN`` = shards M..N.
:func:`load_lcb_problems` reads exactly the tag's shards (from a directory or a list of files), drops duplicate ids,
and can further cut a half-open contest-date window [start, end) for the date-window conventions above.

Record fields: question_title, question_content, platform, question_id, contest_id, contest_date (ISO), starter_code,
difficulty, public_test_cases (a JSON list of {input, output, testtype}), private_test_cases (the same JSON, or --
in the lite release -- base64 of zlib of a pickled JSON string), metadata (JSON; LeetCode problems carry
``func_name``).

Prompt (:func:`lcb_messages`): LiveCodeBench's generic chat prompt (its OpenAI-chat style): the system message
"You are an expert Python programmer. ..." and a user turn with "### Question:", the format instruction (starter
code, or stdin/stdout), and "### Answer: (use the provided format with backticks)".

Extraction (:func:`extract_lcb_code`): as LiveCodeBench, the lines between the last two lines that contain "```"
(no code when there are fewer than two).

Grading: :mod:`prift.lcb_judge`.
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from datetime import date, datetime
from pathlib import Path

# Shard k = the problems added by release k; the cumulative sizes of release_v1..v6 (the dataset card).
LCB_SHARDS = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
LCB_RELEASE_SIZES = {"release_v1": 400, "release_v2": 511, "release_v3": 612, "release_v4": 713,
                     "release_v5": 880, "release_v6": 1055}
LCB_HUB = "livecodebench/code_generation_lite"
TEST_TIMEOUT_S = 6.0
LCB_STOP = ("###",)   # LiveCodeBench's runner (`--stop` default)

SYSTEM_MESSAGE = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
                  "generate a correct Python program that matches the specification and passes all tests. You will "
                  "NOT return anything except for the program.")
FORMAT_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                  "code within delimiters.")
FORMAT_STDIN = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test "
                "on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
                "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------

class _NoGlobals(pickle.Unpickler):
    """The private tests are a pickled *string*: refuse anything that would import or call."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case payload")


def decode_tests(raw) -> list[dict]:
    """Test cases of a record field: a list, a JSON string, or base64(zlib(pickle(JSON string)))."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return [dict(t) for t in raw]
    try:
        tests = json.loads(raw)
    except json.JSONDecodeError:
        payload = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(raw.encode("utf-8"))))).load()
        tests = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
    if not isinstance(tests, list):
        raise ValueError("LiveCodeBench test cases must decode to a list")
    return [dict(t) for t in tests]


def _contest_day(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def release_shards(version: str) -> tuple[str, ...]:
    """Shard file names of a LiveCodeBench version tag: ``release_vN`` (cumulative: shards 1..N), ``vN`` (the
    problems added by release N) or ``vM_vN`` (releases M..N)."""
    m = (re.fullmatch(r"release_v(\d+)", version) or re.fullmatch(r"v(\d+)", version)
         or re.fullmatch(r"v(\d+)_v(\d+)", version))
    if m is None:
        raise ValueError(f"unknown LiveCodeBench version tag {version!r}; use release_vN, vN or vM_vN "
                         f"(N = 1..{len(LCB_SHARDS)})")
    lo, hi = (1, int(m[1])) if version.startswith("release_") else (int(m[1]), int(m[m.lastindex]))
    if not 1 <= lo <= hi <= len(LCB_SHARDS):
        raise ValueError(f"LiveCodeBench version tag {version!r}: releases 1..{len(LCB_SHARDS)} exist "
                         f"(shards {', '.join(LCB_SHARDS)})")
    return LCB_SHARDS[lo - 1:hi]


def in_window(contest_date, window) -> bool:
    """``window``: (start, end) dates (or ISO strings), half-open [start, end)."""
    start, end = (_contest_day(w) for w in window)
    return start <= _contest_day(contest_date) < end


def _iter_shard(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _select_shards(shards, version: str) -> list[Path]:
    """The tag's shards, in release order, out of a directory or a list of files (other shards are ignored)."""
    names = release_shards(version)
    if isinstance(shards, (str, Path)) and Path(shards).is_dir():
        where, have = str(shards), {n: Path(shards) / n for n in names if (Path(shards) / n).is_file()}
    else:
        files = [Path(shards)] if isinstance(shards, (str, Path)) else [Path(f) for f in shards]
        where, have = ", ".join(map(str, files)), {f.name: f for f in files if f.name in names}
    missing = [n for n in names if n not in have]
    if missing:
        raise FileNotFoundError(f"LiveCodeBench {version} needs shards {', '.join(names)}; missing "
                                f"{', '.join(missing)} in {where}")
    return [have[n] for n in names]


def load_lcb_problems(shards, version: str, log=print, window=None) -> list[dict]:
    """Problems of the version tag ``version`` (:func:`release_shards`) from the shard files (a directory holding
    them, or a list of files), optionally cut to the contest-date ``window`` [start, end), in contest-date order:
    ``{id, title, problem, starter_code, platform, difficulty, contest_date, fn_name, public_test_cases,
    private_test_cases}`` (test fields kept raw; :func:`problem_tests` decodes them)."""
    files = _select_shards(shards, version)
    seen, out = set(), []
    for shard in files:
        for r in _iter_shard(shard):
            if r["question_id"] in seen:
                continue
            seen.add(r["question_id"])
            if window is not None and not in_window(r["contest_date"], window):
                continue
            meta = r.get("metadata") or "{}"
            meta = json.loads(meta) if isinstance(meta, str) else meta
            out.append({"id": str(r["question_id"]), "title": r.get("question_title", ""),
                        "problem": r["question_content"], "starter_code": r.get("starter_code") or "",
                        "platform": r.get("platform"), "difficulty": r.get("difficulty"),
                        "contest_date": str(r["contest_date"]), "fn_name": meta.get("func_name"),
                        "public_test_cases": r.get("public_test_cases"),
                        "private_test_cases": r.get("private_test_cases")})
    out.sort(key=lambda p: (p["contest_date"], p["id"]))
    cut = "" if window is None else f" in [{window[0]}, {window[1]})"
    log(f"LiveCodeBench {version}{cut}: {len(out)} problems from {', '.join(f.name for f in files)}")
    expected = LCB_RELEASE_SIZES.get(version)
    if window is None and expected is not None and len(out) != expected:
        log(f"WARNING: LiveCodeBench {version} has {expected} problems on the hub's dataset card, these shards "
            f"give {len(out)}")
    return out


def download_lcb_shards(version: str, revision: str | None = None, cache_dir: str | None = None) -> list[Path]:
    """Fetch the version tag's shards from the hub (network needed); returns local paths for
    :func:`load_lcb_problems`."""
    from huggingface_hub import hf_hub_download
    return [Path(hf_hub_download(LCB_HUB, name, repo_type="dataset", revision=revision, cache_dir=cache_dir))
            for name in release_shards(version)]


def problem_tests(problem: dict) -> list[dict]:
    """Public then private tests of a problem record (either the raw hub record or :func:`load_lcb_problems`')."""
    return decode_tests(problem.get("public_test_cases")) + decode_tests(problem.get("private_test_cases"))


# ----------------------------------------------------------------------------------------------------------------
# prompt and extraction
# ----------------------------------------------------------------------------------------------------------------

def lcb_user_prompt(problem: dict) -> str:
    text = problem.get("problem", problem.get("question_content", ""))
    starter = problem.get("starter_code") or ""
    s = f"### Question:\n{text}\n\n"
    if starter:
        s += f"### Format: {FORMAT_STARTER}\n```python\n{starter}\n```\n\n"
    else:
        s += f"### Format: {FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"
    return s + "### Answer: (use the provided format with backticks)\n\n"


def lcb_messages(problem: dict) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": lcb_user_prompt(problem)}]


def lcb_prompt(tokenizer, problem: dict) -> str:
    """The generation prompt string (chat template applied, assistant turn opened)."""
    return tokenizer.apply_chat_template(lcb_messages(problem), add_generation_prompt=True, tokenize=False)


def extract_lcb_code(response: str) -> str:
    lines = response.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1:fences[-1]])
