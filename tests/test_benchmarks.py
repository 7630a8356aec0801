"""Benchmark kinds (prift.benchmarks): the registry agrees with the config schema and the harnesses, and a benchmark
behaves by its `kind:` and `format:`, never by its name - a renamed entry prepares, grades and scores the same."""
from __future__ import annotations

import json

import pytest
import yaml

from prift import benchmarks as B
from prift import config as C
from prift import crossrefs
from prift import sweeps as S
from prift.cli import main
from prift.data import read_jsonl
from prift.io import write_jsonl
from tests.conftest import REPO


def _schema_benchmark():
    return yaml.safe_load(C.SCHEMA.read_text())["properties"]["benchmarks"]["additionalProperties"]


def test_registry_agrees_with_the_schema_and_the_harnesses():
    from prift import codeeval, mcq
    from prift.grading import GOLD_FORMATS
    entry = _schema_benchmark()
    assert entry["properties"]["kind"]["enum"] == list(B.KINDS) == ["math", "evalplus", "livecodebench", "mcq"]
    then = {rule["if"]["properties"]["kind"]["const"]: rule["then"] for rule in entry["allOf"]}
    formats = {k: t.get("properties", {}).get("format", {}).get("enum", []) for k, t in then.items()}
    required = {k: t.get("required", []) for k, t in then.items()}
    for name, k in B.KINDS.items():
        assert formats[name] == list(k.formats), name
        assert ("format" in required[name]) == bool(k.formats), name
        assert set(k.reads) <= set(entry["properties"]), name
    assert list(GOLD_FORMATS) == list(B.kind("math").formats)
    assert list(codeeval.EVALPLUS_DATASETS) == list(B.kind("evalplus").formats)
    assert list(mcq.MCQ_FORMATS) == list(B.kind("mcq").formats)
    # the keys config validation names when given to a kind that does not read them
    readers = {key: tuple(n for n, k in B.KINDS.items() if key in k.reads)
               for k in B.KINDS.values() for key in k.reads}
    readers["format"] = tuple(n for n, k in B.KINDS.items() if k.formats)
    assert crossrefs.BENCHMARK_KIND_KEYS == readers
    assert [n for n, k in B.KINDS.items() if not k.sampled] == ["mcq"]   # the only one whose `generation` is refused


def test_lookups_fail_with_the_names():
    with pytest.raises(KeyError, match=r"unknown benchmark kind 'maths'; known: math, evalplus, livecodebench, mcq; "
                                       r"did you mean 'math'\?"):
        B.kind("maths")
    with pytest.raises(ValueError, match="already registered"):
        B.register(type("Again", (B.Kind,), {"name": "math"}))
    from prift.grading import gold_answer
    with pytest.raises(ValueError, match="unknown math record format 'minerva'; known: math500, minerva_math"):
        gold_answer({"solution": "\\boxed{1}"}, "minerva")
    cfg = C.validate(yaml.safe_load((REPO / "config" / "demo.yaml").read_text()))
    with pytest.raises(C.ConfigError, match="unknown benchmark 'math50' \\(did you mean 'math500'\\?\\)"):
        B.entry(cfg, "math50")


def test_the_metrics_config_validation_promises_are_the_ones_each_kind_writes(tmp_path):
    """prift.sweeps.metric_names (what a figure may ask for) ⊆ the metrics of each kind's metrics file."""
    cfg = C.validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    verdicts = {"qwen": True, "math_verify": True, "plus": True, "base": True, "passed": True, "correct": True}
    write_jsonl(tmp_path / "g.jsonl", [{"id": f"q{i}", "sample": s, **verdicts} for i in range(3) for s in range(16)])
    for name, entry in cfg["benchmarks"].items():
        k = B.kind(entry["kind"])
        written = {r["metric"] for r in k.metrics(tmp_path / "g.jsonl", {}, k=16, n_boot=10)}
        assert S.metric_names(cfg, name) <= written, name


def _renamed(cfg: dict, renames: dict[str, str]) -> dict:
    """The config with benchmarks renamed everywhere they are named (entries, domains, tables)."""
    cfg = json.loads(json.dumps(cfg))
    cfg["benchmarks"] = {renames.get(b, b): e for b, e in cfg["benchmarks"].items()}
    for section in ("domains", "tables"):
        for spec in cfg[section].values():
            spec["benchmarks"] = [renames.get(b, b) for b in spec["benchmarks"]]
    cfg.pop("figures", None)
    return cfg


def _right_and_wrong(problems: list[dict]) -> list[dict]:
    """Two samples per problem: its gold answer boxed, then a wrong one."""
    return [{"id": p["id"], "sample": s, "text": t, "finish_reason": "stop"}
            for p in problems for s, t in enumerate([f"So $\\boxed{{{p['gold']}}}$.", "It is 12345."])]


def test_a_renamed_benchmark_behaves_the_same(tmp_path):
    """minerva_math → mm, olympiadbench → ob (their `format:` kept): the same problems (gold answers read by the
    format: OlympiadBench's `$` delimiters removed), the same grades and metrics, the same held-out problems."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    renames = {"minerva_math": "mm", "olympiadbench": "ob"}
    paths = {}
    for tag, cfg in (("orig", demo), ("renamed", _renamed(demo, renames))):
        cfg = {**cfg, "results": str(tmp_path / tag), "evaluation": {"k": 2, "n_boot": 20}}
        paths[tag] = tmp_path / f"{tag}.yaml"
        paths[tag].write_text(yaml.safe_dump(cfg))
    for old, new in renames.items():
        out = {}
        for tag, name in (("orig", old), ("renamed", new)):
            d = tmp_path / f"{tag}-{name}"
            assert main(["prepare", "--config", str(paths[tag]), "--benchmark", name, "--out",
                         f"{d}.problems.jsonl"]) == 0
            problems = read_jsonl(f"{d}.problems.jsonl")
            write_jsonl(f"{d}.samples.jsonl", _right_and_wrong(problems[:6]))
            assert main(["grade", "--config", str(paths[tag]), "--benchmark", name, "--problems",
                         f"{d}.problems.jsonl", "--samples", f"{d}.samples.jsonl", "--out", f"{d}.grades.jsonl"]) == 0
            assert main(["metrics", "--config", str(paths[tag]), "--run", "math/tiny/sft", "--benchmark", name,
                         "--grades", f"{d}.grades.jsonl", "--out", f"{d}.metrics.json"]) == 0
            out[tag] = {x: (tmp_path / f"{tag}-{name}.{x}").read_text() for x in ("problems.jsonl", "grades.jsonl")}
            out[tag]["metrics"] = [{**r, "benchmark": None}
                                   for r in json.loads((tmp_path / f"{tag}-{name}.metrics.json").read_text())]
        assert out["renamed"] == out["orig"], old
        assert "$" not in "".join(p["gold"] for p in read_jsonl(tmp_path / f"renamed-{new}.problems.jsonl"))
        assert any(r["metric"] == "avg@2" and r["value"] == 50.0 for r in out["renamed"]["metrics"])
    held = {tag: B.held_out_problems(C.load(paths[tag]), "math") for tag in paths}
    assert held["orig"] == held["renamed"] and len(held["orig"]) == 5 * 24


def test_verbs_refuse_what_a_kind_does_not_do(tmp_path):
    medqa = tmp_path / "medqa.jsonl"
    medqa.write_text("")
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["benchmarks"]["medqa"] = {"label": "MedQA", "kind": "mcq", "format": "medqa", "data": {"path": str(medqa)}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match="'medqa' \\(kind mcq\\) is not sampled"):
        main(["generate", "--config", str(path), "--model", "m", "--benchmark", "medqa", "--problems", "p.jsonl",
              "--out", str(tmp_path / "s.jsonl")])
    with pytest.raises(SystemExit, match="'medqa' \\(kind mcq\\): give --model \\(no --problems/--samples\\)"):
        main(["grade", "--config", str(path), "--benchmark", "medqa", "--problems", "p.jsonl", "--samples",
              "s.jsonl", "--out", str(tmp_path / "g.jsonl")])
    with pytest.raises(SystemExit, match="'aime24' \\(kind math\\): give --problems and --samples \\(no --model\\)"):
        main(["grade", "--config", str(path), "--benchmark", "aime24", "--model", "m", "--out", str(tmp_path / "g")])
