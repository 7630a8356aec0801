"""Config validation (schema + cross-references) and the DAG the configs produce."""
from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from prift import config as C
from tests.conftest import REPO


def _load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = C.validate(_load(name))
    assert cfg["tables"]


def test_unknown_key_is_named_with_suggestion():
    cfg = _load("demo.yaml")
    cfg["training"]["math"]["learning_rate"] = 1e-3
    with pytest.raises(C.ConfigError, match=r"training\.math\.learning_rate.*unknown key"):
        C.validate(cfg)


def test_wrong_type_names_the_key():
    cfg = _load("demo.yaml")
    cfg["generation"]["n"] = "sixteen"
    with pytest.raises(C.ConfigError, match=r"generation\.n"):
        C.validate(cfg)


def test_unknown_rule_suggests_the_close_one():
    cfg = _load("demo.yaml")
    cfg["methods"]["dft"]["rule"] = "probb"
    with pytest.raises(C.ConfigError, match=r"methods\.dft\.rule.*did you mean 'prob'"):
        C.validate(cfg)


def test_unknown_source_is_rejected():
    cfg = _load("demo.yaml")
    cfg["methods"]["dft"]["source"] = "frozen"
    with pytest.raises(C.ConfigError, match=r"methods\.dft\.source"):
        C.validate(cfg)


def test_table_with_unknown_method():
    cfg = _load("demo.yaml")
    cfg["tables"]["table3"]["methods"].append("prift-mas")
    with pytest.raises(C.ConfigError, match=r"tables\.table3\.methods.*prift-mas.*did you mean 'prift-mass'"):
        C.validate(cfg)


def test_runs_and_references_from_tables():
    cfg = C.validate(_load("config.yaml"))
    t3 = [r for r in C.sft_runs(cfg) if r[1] in ("qwen2.5-math-7b", "qwen3-8b-base")]
    assert len(t3) == 2 * 8  # Table 3: two backbones × eight fine-tuning methods
    # one reference pass per (reference, domain), whatever the number of methods reading it
    assert sorted(C.references_needed(cfg)) == [
        ("deepseek-math-7b", "math"), ("llama-2-7b", "medical"), ("llama-2-7b", "medical-lowdata"),
        ("qwen2.5-1.5b", "math"), ("qwen2.5-1.5b-instruct", "math"), ("qwen2.5-coder-3b", "code"),
        ("qwen2.5-math-1.5b", "math"), ("qwen2.5-math-7b", "math"), ("qwen3-4b-instruct", "code"),
        ("qwen3-8b-base", "math")]


def test_probes_only_in_the_domains_that_draw_them():
    """Drift probes (and the examples set aside for them) only where a figure reads them: the domains of
    analysis.tables and of Fig. 4/5; all domains when no table is named; none with probes off."""
    cfg = C.validate(_load("config.yaml"))
    assert C.probed_domains(cfg) == {"medical-lowdata", "math"}  # Table 2 + Fig. 4/5, Table 3
    assert C.probed_domains(C.validate(_load("demo.yaml"))) == {"math"}
    cfg["figures"]["fig4"]["domain"] = "medical"
    assert C.probed_domains(cfg) == {"medical-lowdata", "math", "medical"}
    cfg["analysis"]["tables"] = []
    assert C.probed_domains(cfg) is None
    cfg["analysis"]["every"] = 0
    assert C.probed_domains(cfg) == set()


def test_per_backbone_methods_and_layouts():
    cfg = C.validate(_load("config.yaml"))
    t10 = cfg["tables"]["table10"]
    assert C.table_methods(t10, "qwen2.5-math-1.5b")[-2:] == ["prift-prob", "prift-mass"]
    assert len(C.table_cells(t10)) == (9 + 3 * 5) * 5
    from prift import tables as T
    specs = T.specs_from_config({**cfg, "tables": C.table_layouts(cfg)})
    assert [(g.label, len(specs["table10"].group_rows(g))) for g in specs["table10"].models] == [
        ("Qwen2.5-Math (1.5B)", 9), ("Qwen2.5 (1.5B)", 5), ("Qwen2.5-Instruct (1.5B)", 5), ("DeepSeekMath (7B)", 5)]
    assert specs["table2"].cells == T.SPECS["table2"].cells   # paper layout: rules as columns, variant lowdata
    bad = _load("config.yaml")
    bad["tables"]["table10"]["methods"]["qwen2.5-15b"] = bad["tables"]["table10"]["methods"].pop("qwen2.5-1.5b")
    with pytest.raises(C.ConfigError) as e:
        C.validate(bad)
    assert "'tables.table10.methods': 'qwen2.5-15b' is not one of the table's backbones (did you mean " \
           "'qwen2.5-1.5b'?)" in str(e.value) and "no methods for backbone 'qwen2.5-1.5b'" in str(e.value)


def test_benchmark_kind_keys():
    cfg = _load("config.yaml")
    del cfg["benchmarks"]["humaneval_plus"]["suite"]
    with pytest.raises(C.ConfigError, match=r"benchmarks\.humaneval_plus.*'suite' is a required property"):
        C.validate(cfg)
    cfg = _load("config.yaml")
    cfg["benchmarks"]["math500"]["timeout"] = 3
    cfg["benchmarks"]["medqa"]["generation"] = {"n": 1}
    with pytest.raises(C.ConfigError, match=r"(?s)math500\.timeout': only read for kind 'code'.*medqa\.generation"):
        C.validate(cfg)


def _dry_run(*args):
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "-n", "--cores", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_full_config_dry_run_lists_table3_jobs():
    p = _dry_run("results/tables/table3.csv", "--configfile", "config/config.yaml")
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    sft = set(re.findall(r"output: results/sft/math/([^/]+)/([^/]+)/final", out))
    methods = {"sft", "dft", "eaft", "idft", "talr", "asft", "prift-prob", "prift-mass"}
    assert sft == {(b, m) for b in ("qwen2.5-math-7b", "qwen3-8b-base") for m in methods}
    gen = set(re.findall(r"output: results/samples/math/([^/]+)/([^/]+)/([^/]+)\.jsonl", out))
    benches = {"math500", "minerva_math", "olympiadbench", "aime24", "amc23"}
    assert gen == {(b, m, x) for b in ("qwen2.5-math-7b", "qwen3-8b-base") for m in methods | {"original"}
                   for x in benches}
    scores = set(re.findall(r"output: results/scores/([^/]+)/([^/]+)/math\.safetensors", out))
    assert scores == {("qwen2.5-math-7b",) * 2, ("qwen3-8b-base",) * 2}  # one reference pass per backbone


def _outputs(out: str, rule: str) -> set[str]:
    """Output paths of the jobs of one rule in a dry run's listing."""
    found = set()
    for block in re.split(r"\n(?=\[)", out):
        if re.search(rf"rule {rule}:", block):
            found.update(re.search(r"\n    output: ([^\n]+)", block).group(1).split(", "))
    return found


def test_full_config_dry_run_lists_code_medical_and_appendix_jobs():
    """Tables 2, 4, 9, 10, 11: every cell has its evaluation job; sampled benchmarks go through generate + grade,
    multiple choice through grade_mcq (no samples), every one through metrics."""
    tables = ("table2", "table4", "table9", "table10", "table11")
    p = _dry_run(*(f"results/tables/{t}.csv" for t in tables), "--configfile", "config/config.yaml")
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    cfg = C.validate(_load("config.yaml"))
    gen, grade, mcq, metrics = (_outputs(out, r) for r in ("generate", "grade", "grade_mcq", "metrics"))
    want = {"generate": set(), "grade": set(), "grade_mcq": set(), "metrics": set()}
    for t in tables:
        spec = cfg["tables"][t]
        for b, m, bench in C.table_cells(spec):
            run = f"{spec['domain']}/{b}/{m}/{bench}"
            want["metrics"].add(f"results/metrics/{run}.json")
            if cfg["benchmarks"][bench]["kind"] == "mcq":
                want["grade_mcq"].add(f"results/grades/{run}.jsonl")
            else:
                want["generate"].add(f"results/samples/{run}.jsonl")
                want["grade"].add(f"results/grades/{run}.jsonl")
    assert (gen, grade, mcq, metrics) == (want["generate"], want["grade"], want["grade_mcq"], want["metrics"])
    # Table 4: 9 methods × 4 code benchmarks; Table 9: 9 × 3 medical; Table 10: (9 + 3 × 5) runs × 5 math benchmarks
    assert sum("/qwen3-4b-instruct/" in x for x in gen) == 36 and sum("/qwen2.5-coder-3b/" in x for x in gen) == 36
    assert sum(x.startswith("results/grades/medical/") for x in mcq) == 27
    assert sum(x.startswith("results/grades/medical-lowdata/") for x in mcq) == 36
    assert sum(x.startswith("results/samples/math/") for x in gen) == 120
    assert not any("/medqa" in x or "/medmcqa" in x or "/mmlu_medical" in x for x in gen | grade)
    sft = _outputs(out, "sft")
    assert {x.split("/")[2] for x in sft} == {"code", "medical", "medical-lowdata", "math"}
    assert len(sft) == 8 + 8 + 8 + 11 + (8 + 3 * 4)


def test_bad_config_fails_before_any_job(tmp_path):
    bad = _load("demo.yaml")
    bad["methods"]["dft"]["rulez"] = "prob"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    p = _dry_run("--configfile", str(f))
    assert p.returncode != 0
    assert "rulez" in p.stdout + p.stderr


def test_the_dags_json_config_keeps_small_floats_numbers(tmp_path):
    """The DAG writes the validated config as JSON; floats below 1e-4 come out as `5e-05`, which YAML 1.1 reads as a
    string. Loading the JSON must give back the same config (the paper's lr 5e-5, RL lr 1e-6)."""
    import json
    cfg = C.load(REPO / "config" / "config.yaml")
    path = tmp_path / "effective.json"
    path.write_text(json.dumps(cfg, indent=1, sort_keys=True))
    assert "e-05" in path.read_text()
    assert C.load(path) == cfg


@pytest.mark.parametrize("params,problem", [
    ({"tauu": 0.5}, "'methods.prift-mass.params': unknown parameter 'tauu' of rule 'mass' (did you mean 'tau'?)"),
    ({"tau": 7.0}, "'methods.prift-mass.params': parameter 'tau' must be a number in [0, 1], got 7.0"),
])
def test_rule_parameters_are_checked_before_any_job(params, problem):
    """Names and ranges of a rule's parameters fail at validation (snakemake -n), not at the first training step."""
    cfg = _load("demo.yaml")
    cfg["methods"]["prift-mass"]["params"] = params
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    assert problem in str(e.value)


def test_cross_model_references_need_one_tokenizer_family():
    """Table 8: a reference scores the student's tokens only within one tokenizer family, checked from the families
    the config declares before any job (naming both models), and a family must be declared to be checked."""
    cfg = _load("config.yaml")
    cfg["backbones"]["qwen2.5-math-7b"]["tokenizer"] = "qwen3"
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    assert ("'methods.prift-prob-ref-qwen2.5-math-7b.reference': reference 'qwen2.5-math-7b' (tokenizer qwen3) cannot "
            "score the tokens of backbone 'qwen2.5-math-1.5b' (tokenizer qwen2.5)") in str(e.value)
    cfg = _load("config.yaml")
    del cfg["backbones"]["qwen2.5-1.5b"]["tokenizer"]
    with pytest.raises(C.ConfigError, match=r"declare the tokenizer family of 'qwen2.5-1.5b'"):
        C.validate(cfg)


def test_full_config_dry_run_lists_tables_7_and_8_jobs():
    """Table 7 (KD from Qwen2.5-Math-7B, five β) and Table 8 (cross-model statistics): their SFT runs, one reference
    pass per (reference, student) - the 7B teacher scores the 1.5B student's tokenisation, Qwen2.5-Math-1.5B scores
    Qwen2.5-1.5B's, a file apart from its own - and the evaluation of every cell."""
    p = _dry_run("results/tables/table7.csv", "results/tables/table8.csv", "--configfile", "config/config.yaml")
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    kd = [f"kd-beta{b}" for b in ("0.00", "0.25", "0.50", "0.75", "1.00")]
    assert _outputs(out, "sft") == (
        {f"results/sft/math/qwen2.5-math-1.5b/{m}/final" for m in kd + ["prift-prob", "prift-prob-ref-qwen2.5-math-7b"]}
        | {f"results/sft/math/qwen2.5-1.5b/{m}/final" for m in ("prift-prob", "prift-prob-ref-qwen2.5-math-1.5b")})
    assert _outputs(out, "score") == {f"results/scores/{r}/{s}/math.safetensors" for r, s in (
        ("qwen2.5-math-1.5b", "qwen2.5-math-1.5b"), ("qwen2.5-math-7b", "qwen2.5-math-1.5b"),
        ("qwen2.5-1.5b", "qwen2.5-1.5b"), ("qwen2.5-math-1.5b", "qwen2.5-1.5b"))}
    assert len(_outputs(out, "generate")) == len(_outputs(out, "metrics")) == (7 + 2) * 5
