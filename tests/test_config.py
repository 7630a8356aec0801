"""Config validation (schema + cross-references) and the DAG the configs produce."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from prift import config as C
from prift.paths import Layout
from tests.conftest import REPO
from tests.dag import planned


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
    methods = C.paper_table_runs("table10")["methods"]                # a table listing its own methods, mis-keyed
    methods["qwen2.5-15b"] = methods.pop("qwen2.5-1.5b")
    bad["tables"]["table10"]["methods"] = methods
    with pytest.raises(C.ConfigError) as e:
        C.validate(bad)
    assert "'tables.table10.methods': 'qwen2.5-15b' is not one of the table's backbones (did you mean " \
           "'qwen2.5-1.5b'?)" in str(e.value) and "no methods for backbone 'qwen2.5-1.5b'" in str(e.value)


def test_benchmark_kind_keys():
    cfg = _load("config.yaml")
    del cfg["benchmarks"]["humaneval_plus"]["format"]
    with pytest.raises(C.ConfigError, match=r"benchmarks\.humaneval_plus.*'format' is a required property"):
        C.validate(cfg)
    cfg = _load("config.yaml")
    cfg["benchmarks"]["minerva_math"]["format"] = "mbpp"      # a format of another kind
    cfg["benchmarks"]["lcb_v5"]["kind"] = "code"              # the kinds before issue 17
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    assert "config key 'benchmarks.minerva_math.format': 'mbpp' is not one of ['math500'" in str(e.value)
    assert "config key 'benchmarks.lcb_v5.kind': 'code' is not one of ['math', 'evalplus', 'livecodebench', " \
           "'mcq']" in str(e.value)
    cfg = _load("config.yaml")
    cfg["benchmarks"]["math500"]["timeout"] = 3
    cfg["benchmarks"]["lcb_v6"]["format"] = "humaneval"
    cfg["benchmarks"]["medqa"]["generation"] = {"n": 1}
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    lines = str(e.value).splitlines()[1:]
    assert [x.strip() for x in lines] == [
        "config key 'benchmarks.math500.timeout': only read for kind 'livecodebench', not 'math'",
        "config key 'benchmarks.lcb_v6.format': only read for kind 'math' or 'evalplus' or 'mcq', not "
        "'livecodebench'",
        "config key 'benchmarks.medqa.generation': kind 'mcq' samples nothing (lm-eval scores the option letters)"]


def _dry_run(*args):
    """A dry run: its exit code and prift's one-line problems (config errors are printed before any DAG is built, and
    that text is the interface people read; the jobs of a DAG are read from tests/dag.py's summary instead)."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "-n", "--cores", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


PAPER = REPO / "config" / "config.yaml"
L = Layout("results")   # the paper config's results root, relative to the repository


def test_full_config_dry_run_lists_table3_jobs():
    jobs = planned(PAPER, L.table("table3", "csv"))
    methods = {"sft", "dft", "eaft", "idft", "talr", "asft", "prift-prob", "prift-mass"}
    backbones = ("qwen2.5-math-7b", "qwen3-8b-base")
    benches = {"math500", "minerva_math", "olympiadbench", "aime24", "amc23"}
    assert jobs["sft"] == {L.sft_final("math", b, m) for b in backbones for m in methods}
    assert jobs["generate"] == {L.samples("math", b, m, x) for b in backbones for m in methods | {"original"}
                                for x in benches}
    assert jobs["score"] == {L.scores(b, b, "math") for b in backbones}  # one reference pass per backbone


def test_full_config_dry_run_lists_code_medical_and_appendix_jobs():
    """Tables 2, 4, 9, 10, 11: every cell has its evaluation job; sampled benchmarks go through generate + grade,
    multiple choice through grade_mcq (no samples), every one through metrics."""
    tables = ("table2", "table4", "table9", "table10", "table11")
    jobs = planned(PAPER, *(L.table(t, "csv") for t in tables))
    cfg = C.validate(_load("config.yaml"))
    gen, grade, mcq, metrics = (jobs.get(r, set()) for r in ("generate", "grade", "grade_mcq", "metrics"))
    want = {"generate": set(), "grade": set(), "grade_mcq": set(), "metrics": set()}
    for t in tables:
        spec = cfg["tables"][t]
        for b, m, bench in C.table_cells(spec):
            run = (spec["domain"], b, m, bench)
            want["metrics"].add(L.metrics(*run))
            if cfg["benchmarks"][bench]["kind"] == "mcq":
                want["grade_mcq"].add(L.grades(*run))
            else:
                want["generate"].add(L.samples(*run))
                want["grade"].add(L.grades(*run))
    assert (gen, grade, mcq, metrics) == (want["generate"], want["grade"], want["grade_mcq"], want["metrics"])
    # Table 4: 9 methods × 4 code benchmarks; Table 9: 9 × 3 medical; Table 10: (9 + 3 × 5) runs × 5 math benchmarks
    assert sum("/qwen3-4b-instruct/" in x for x in gen) == 36 and sum("/qwen2.5-coder-3b/" in x for x in gen) == 36
    assert sum(x.startswith("results/grades/medical/") for x in mcq) == 27
    assert sum(x.startswith("results/grades/medical-lowdata/") for x in mcq) == 36
    assert sum(x.startswith("results/samples/math/") for x in gen) == 120
    assert not any("/medqa" in x or "/medmcqa" in x or "/mmlu_medical" in x for x in gen | grade)
    sft = jobs["sft"]
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
    jobs = planned(PAPER, L.table("table7", "csv"), L.table("table8", "csv"))
    kd = [f"kd-beta{b}" for b in ("0.00", "0.25", "0.50", "0.75", "1.00")]
    assert jobs["sft"] == (
        {L.sft_final("math", "qwen2.5-math-1.5b", m) for m in kd + ["prift-prob", "prift-prob-ref-qwen2.5-math-7b"]}
        | {L.sft_final("math", "qwen2.5-1.5b", m) for m in ("prift-prob", "prift-prob-ref-qwen2.5-math-1.5b")})
    assert jobs["score"] == {L.scores(r, s, "math") for r, s in (
        ("qwen2.5-math-1.5b", "qwen2.5-math-1.5b"), ("qwen2.5-math-7b", "qwen2.5-math-1.5b"),
        ("qwen2.5-1.5b", "qwen2.5-1.5b"), ("qwen2.5-math-1.5b", "qwen2.5-1.5b"))}
    assert len(jobs["generate"]) == len(jobs["metrics"]) == (7 + 2) * 5


# ----------------------------------------------------------------------------------------------------------------------
# checks before any job (prift.preflight) and numbers YAML 1.1 reads as strings (issue #15, item 9)

def _invalid(cfg) -> str:
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    return str(e.value)


def test_missing_paths_are_named_by_their_config_key(tmp_path):
    cfg = _load("demo.yaml")
    cfg["benchmarks"]["math500"]["data"] = {"path": "no/such/math500.jsonl"}
    cfg["domains"]["math"]["train"] = {"path": str(tmp_path / "train.jsonl")}
    cfg["rl"]["prompts"] = {"path": str(tmp_path / "prompts.jsonl")}
    cfg["backbones"]["other"] = {"label": "Other", "path": str(tmp_path / "model")}
    msg = _invalid(cfg)
    assert "config key 'benchmarks.math500.data.path': no/such/math500.jsonl does not exist (relative to the " \
           "working directory" in msg
    for key, p in (("domains.math.train.path", "train.jsonl"), ("rl.prompts.path", "prompts.jsonl"),
                   ("backbones.other.path", "model")):
        assert f"config key '{key}': {tmp_path / p} does not exist\n" in msg + "\n"
    (tmp_path / "model").mkdir()
    (tmp_path / "prompts.jsonl").write_text("{}\n")
    D_rows = "".join(f'{{"problem": "p{i}", "solution": "s{i}"}}\n' for i in range(100))
    (tmp_path / "train.jsonl").write_text(D_rows)
    cfg["benchmarks"]["math500"]["data"] = {"path": str(tmp_path / "train.jsonl")}
    C.validate(cfg)


def test_global_batch_must_be_a_multiple_of_the_per_device_batch():
    cfg = _load("demo.yaml")
    cfg["training"]["math"].update(global_batch_size=20, per_device_batch_size=8)
    assert "config key 'training.math.global_batch_size': 20 is not a multiple of per_device_batch_size 8" \
        in _invalid(cfg)
    cfg["training"]["math"] = {"per_device_batch_size": 3}        # the recipe's default global batch, 256
    assert "config key 'training.math.global_batch_size': 256 is not a multiple of per_device_batch_size 3" \
        in _invalid(cfg)


def test_k_larger_than_n_is_refused():
    cfg = _load("demo.yaml")
    cfg["benchmarks"]["aime24"]["generation"] = {"n": 8}
    msg = _invalid(cfg)
    assert "config key 'evaluation.k': k=16 is larger than the 8 samples per problem of benchmark 'aime24' " \
           "(benchmarks.aime24.generation.n)" in msg
    assert msg.count("evaluation.k") == 1
    cfg = _load("demo.yaml")
    cfg["generation"]["n"] = 4
    assert _invalid(cfg).count("(generation.n); Avg@k / Pass@k need n >= k") == 5   # every math benchmark of table3
    cfg["evaluation"]["k"] = 4
    C.validate(cfg)


def test_heldout_larger_than_the_data_is_refused(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(f'{{"problem": "p{i}", "solution": "s{i}"}}\n\n' for i in range(20)))  # blank lines too
    cfg = _load("demo.yaml")
    cfg["domains"]["math"]["train"] = {"path": str(train), "limit": 12}
    cfg["analysis"]["heldout"] = 10
    assert (f"config key 'analysis.heldout': 10 held-out examples for the drift probes of domain 'math' are the "
            f"records after the first limit=12 of domains.math.train, which has 20 records ({train})") \
        in _invalid(copy.deepcopy(cfg))
    cfg["analysis"]["heldout"] = 8
    C.validate(copy.deepcopy(cfg))
    cfg["domains"]["math"]["train"] = {"path": str(train)}     # no limit: the last `heldout` records
    cfg["analysis"]["heldout"] = 20
    assert "leave no training example: domains.math.train has 20 records" in _invalid(copy.deepcopy(cfg))
    cfg["analysis"]["every"] = 0                               # probes off: nothing is held out
    C.validate(copy.deepcopy(cfg))
    cfg = _load("demo.yaml")
    cfg["analysis"]["heldout"] = 1024                          # the generator's n
    assert "domains.math.train has 1024 records (generator demo_math, n=1024)" in _invalid(cfg)
    cfg = _load("demo.yaml")
    cfg["domains"]["math"]["train"] = {"hub": "some/dataset", "limit": 10}   # counted by `prift prepare` only
    cfg["analysis"]["heldout"] = 10 ** 6
    C.validate(cfg)


def test_exponent_floats_that_yaml_1_1_reads_as_strings_are_numbers(tmp_path):
    text = (REPO / "config" / "demo.yaml").read_text().replace("lr: 2.0e-3 ", "lr: 2e-3   ")
    text = text.replace("max_length: 192", "max_length: 1.92e2")
    assert "lr: 2e-3 " in text and yaml.safe_load(text)["training"]["math"]["lr"] == "2e-3"
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    assert C.read(path)["training"]["math"]["lr"] == 0.002      # as written (prift fetch reads it so), and validated
    cfg = C.load(path)
    assert cfg["training"]["math"]["lr"] == 0.002 and cfg["training"]["math"]["max_length"] == 192
    assert isinstance(cfg["training"]["math"]["max_length"], int)
    raw = _load("config.yaml")
    raw["backbones"]["llama-2-7b"]["revision"] = "1234e56"     # a string where the schema wants one stays a string
    raw["rl"]["recipe"]["lr"] = "1e-6"
    cfg = C.validate(raw)
    assert cfg["backbones"]["llama-2-7b"]["revision"] == "1234e56" and cfg["rl"]["recipe"]["lr"] == 1e-6
    bad = _load("demo.yaml")
    bad["training"]["math"]["max_length"] = "1.5e0"            # not a whole number: still the schema's error
    assert "config key 'training.math.max_length': '1.5e0' is not of type 'integer'" in _invalid(bad)


def _dry_run_config(tmp_path, cfg):
    cfg["results"] = str(tmp_path / "results")
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return _dry_run("--configfile", str(f))


def test_dry_run_names_every_problem_in_one_line_each(tmp_path):
    """`snakemake -n` stops before any job with prift's lines: a missing file, batches that do not divide, k > n,
    held-out examples the data does not have - not at run time on a compute node."""
    cfg = _load("demo.yaml")
    cfg["benchmarks"]["amc23"]["data"] = {"path": "no/such/amc23.jsonl"}
    cfg["training"]["math"]["global_batch_size"] = 24
    cfg["benchmarks"]["aime24"]["generation"] = {"n": 8}
    cfg["analysis"]["heldout"] = 5000
    p = _dry_run_config(tmp_path, cfg)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    for line in ("config key 'benchmarks.amc23.data.path': no/such/amc23.jsonl does not exist",
                 "config key 'training.math.global_batch_size': 24 is not a multiple of per_device_batch_size 16",
                 "config key 'evaluation.k': k=16 is larger than the 8 samples per problem of benchmark 'aime24'",
                 "config key 'analysis.heldout': 5000 held-out examples"):
        assert line in out, out[-3000:]
    assert not (tmp_path / "results" / "data").exists()


def test_dry_run_wrong_type_is_one_line_not_a_schema_dump(tmp_path):
    cfg = _load("demo.yaml")
    cfg["generation"]["n"] = "sixteen"
    p = _dry_run_config(tmp_path, cfg)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "config key 'generation.n': 'sixteen' is not of type 'integer'" in out
    assert "Failed validating" not in out and "On instance" not in out, out[-3000:]


def test_dry_run_reads_exponent_floats_as_numbers(tmp_path):
    text = (REPO / "config" / "demo.yaml").read_text().replace("lr: 2.0e-3 ", "lr: 2e-3   ")
    text = text.replace("results: results", f"results: {tmp_path / 'results'}")
    f = tmp_path / "cfg.yaml"
    f.write_text(text)
    p = _dry_run("--configfile", str(f))
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    import json
    (used,) = (tmp_path / "results" / ".config").glob("*.json")
    assert json.loads(used.read_text())["training"]["math"]["lr"] == 0.002


def test_paper_config_holds_the_protocol_values():
    """docs/protocol.md: the values of the paper's protocol (the paper, the authors' code, the Qwen2.5-Math harness,
    ASFT's medical setup, verl 0.4's DAPO) as the paper config states them."""
    cfg = C.validate(_load("config.yaml"))
    g = cfg["generation"]
    assert (g["n"], g["temperature"], g["top_p"], g["max_new_tokens"], g["prompt"]) == (16, 1.0, 1.0, 4096, "harness")
    assert g["stop"] == ["</s>", "<|im_end|>", "<|endoftext|>"] and g["stop_token_ids"] == "auto"
    assert cfg["evaluation"]["k"] == 16
    code = {b: cfg["benchmarks"][b]["generation"] for b in ("humaneval_plus", "mbpp_plus", "lcb_v5", "lcb_v6")}
    assert code == {"humaneval_plus": {"n": 1, "temperature": 0.0, "max_new_tokens": 768},
                    "mbpp_plus": {"n": 1, "temperature": 0.0, "max_new_tokens": 768},
                    "lcb_v5": {"n": 1, "temperature": 0.0, "max_new_tokens": 4096},
                    "lcb_v6": {"n": 1, "temperature": 0.0, "max_new_tokens": 4096}}
    assert {b: cfg["backbones"][b].get("max_model_len") for b in ("qwen2.5-math-7b", "qwen2.5-math-1.5b")} == {
        "qwen2.5-math-7b": 4096, "qwen2.5-math-1.5b": 4096}
    math, med = cfg["training"]["math"], cfg["training"]["medical"]
    assert (math["epochs"], math["global_batch_size"], math["lr"], math["max_length"], math["loss_norm"]) == (
        1, 256, 5e-5, 2048, "micro_batch")
    assert (med["epochs"], med["global_batch_size"], med["lr"], med["max_length"]) == (1, 64, 2e-5, 512)
    assert all(r["loss_norm"] == "micro_batch" for r in cfg["training"].values())
    assert cfg["domains"]["math"]["train"] == {"hub": "AI-MO/NuminaMath-CoT", "split": "train", "limit": 100000}
    m = cfg["methods"]
    assert m["talr"]["params"] == {"tau": "adaptive", "w_min": 0.01} and m["talr-pt"]["source"] == "pretrained"
    assert m["asft"]["asft_beta"] == 0.05 and m["idft"]["params"] == {"b": 1.0}
    assert m["prift-mass"]["params"] == {"tau": 0.5} and cfg["scoring"]["topk"] == 20   # EAFT's K = 20
    assert [m[f"kd-beta{b}"]["kd_beta"] for b in ("0.00", "0.25", "0.50", "0.75", "1.00")] == [0, 0.25, 0.5, 0.75, 1]
    r = cfg["rl"]["recipe"]
    assert (r["epsilon"], r["epsilon_high"], r["kl_coef"], r["lr"], r["prompt_batch_size"], r["mini_batch_size"],
            r["on_exhausted"], r["importance_sampling_correction"]) == (0.2, 0.28, 0.01, 1e-6, 128, 32, "error", False)
    assert {b: v["rollouts_per_prompt"] for b, v in cfg["rl"]["backbones"].items()} == {
        "qwen2.5-math-1.5b": 32, "qwen3-8b-base": 16}


# ----------------------------------------------------------------------------------------------------------------------
# What the paper config says once (issue #17, item 5): a default training recipe with per-domain overrides, and the
# paper's tables taking their runs from prift.tables.SPECS. The resolved config is today's, key by key.

# config/config.yaml's four recipes as they were written out in full before `training.default`
RECIPES_BEFORE = {
    "math": {"epochs": 1, "global_batch_size": 256, "per_device_batch_size": 4, "lr": 5e-05, "betas": [0.9, 0.95],
             "weight_decay": 0.01, "scheduler": "cosine", "warmup_ratio": 0.1, "grad_clip": 1.0, "max_length": 2048,
             "bf16": True, "save_steps": 50, "logging_steps": 5, "seed": 42, "gradient_checkpointing": True,
             "loss_norm": "micro_batch"},
    "code": {"epochs": 1, "global_batch_size": 256, "per_device_batch_size": 4, "lr": 5e-05, "betas": [0.9, 0.95],
             "weight_decay": 0.01, "scheduler": "cosine", "warmup_ratio": 0.1, "grad_clip": 1.0, "max_length": 2048,
             "bf16": True, "save_steps": 20, "logging_steps": 5, "seed": 42, "gradient_checkpointing": True,
             "loss_norm": "micro_batch"},
    "medical": {"epochs": 1, "global_batch_size": 64, "per_device_batch_size": 8, "lr": 2e-05, "betas": [0.9, 0.95],
                "weight_decay": 0.01, "scheduler": "cosine", "warmup_ratio": 0.1, "grad_clip": 1.0, "max_length": 512,
                "bf16": True, "save_steps": 200, "logging_steps": 10, "seed": 42, "gradient_checkpointing": True,
                "loss_norm": "micro_batch"},
    "medical-lowdata": {"epochs": 1, "global_batch_size": 64, "per_device_batch_size": 8, "lr": 2e-05,
                        "betas": [0.9, 0.95], "weight_decay": 0.01, "scheduler": "cosine", "warmup_ratio": 0.1,
                        "grad_clip": 1.0, "max_length": 512, "bf16": True, "save_steps": 25, "logging_steps": 5,
                        "seed": 42, "gradient_checkpointing": True, "loss_norm": "micro_batch"},
}
MATH5 = ["math500", "minerva_math", "olympiadbench", "aime24", "amc23"]
CODE4 = ["humaneval_plus", "mbpp_plus", "lcb_v5", "lcb_v6"]
MED3 = ["medqa", "mmlu_medical", "medmcqa"]
NINE = ["original", "sft", "dft", "eaft", "idft", "talr", "asft", "prift-prob", "prift-mass"]
CODE_NINE = ["original", "sft", "dft", "idft", "eaft", "talr", "asft", "prift-prob", "prift-mass"]
SMALL = ["original", "sft", "dft", "prift-prob", "prift-mass"]
P16, PASS16 = {"avg@16": "Avg@16", "pass@16": "P@16"}, {"avg@16": "Avg@16", "pass@16": "Pass@16"}
# config/config.yaml's tables as they listed their runs before taking them from prift.tables.SPECS
TABLE_RUNS_BEFORE = {
    "table3": (["qwen2.5-math-7b", "qwen3-8b-base"], NINE, MATH5, P16),
    "table6": (["qwen2.5-math-1.5b"], ["eaft", "eaft-pt", "idft", "idft-pt", "talr", "talr-pt"], MATH5, P16),
    "table2": (["llama-2-7b"], ["original", "sft", "dft", "prift-prob", "p-top50-online", "p-top50-pt", "p-bot50-online",
                                "p-bot50-pt", "h-top50-online", "h-top50-pt", "h-bot50-online", "h-bot50-pt"],
               MED3, {"acc": "Acc"}),
    "table4": (["qwen3-4b-instruct"], CODE_NINE, CODE4, {"pass@1": "pass@1"}),
    "table9": (["llama-2-7b"], NINE, MED3, {"acc": "Acc"}),
    "table10": (["qwen2.5-math-1.5b", "qwen2.5-1.5b", "qwen2.5-1.5b-instruct", "deepseek-math-7b"],
                {"qwen2.5-math-1.5b": NINE, "qwen2.5-1.5b": SMALL, "qwen2.5-1.5b-instruct": SMALL,
                 "deepseek-math-7b": SMALL}, MATH5, P16),
    "table11": (["qwen2.5-coder-3b"], CODE_NINE, CODE4, {"pass@1": "pass@1"}),
    "table7": (["qwen2.5-math-1.5b"], [f"kd-beta{b}" for b in ("0.00", "0.25", "0.50", "0.75", "1.00")], MATH5, PASS16),
    "table8": (["qwen2.5-math-1.5b", "qwen2.5-1.5b"],
               {"qwen2.5-math-1.5b": ["prift-prob", "prift-prob-ref-qwen2.5-math-7b"],
                "qwen2.5-1.5b": ["prift-prob", "prift-prob-ref-qwen2.5-math-1.5b"]}, MATH5, PASS16),
    "table5": (["qwen2.5-math-1.5b", "qwen3-8b-base"], ["sft+rl", "dft+rl", "prift-prob+rl", "prift-mass+rl"], MATH5,
               PASS16),
}


def test_default_recipe_with_overrides_resolves_to_each_domains_recipe():
    raw = _load("config.yaml")
    assert "default" in raw["training"] and len(raw["training"]["medical"]) < len(RECIPES_BEFORE["medical"])
    training = C.validate(raw)["training"]
    assert "default" not in training and set(RECIPES_BEFORE) <= set(training)   # one whole recipe per domain
    for fig1c_domain in set(training) - set(RECIPES_BEFORE):           # Fig. 1c's references: their domain's recipe
        assert fig1c_domain.startswith("medical-lowdata@ref") and training[fig1c_domain] == RECIPES_BEFORE[
            "medical-lowdata"]
    for domain, recipe in RECIPES_BEFORE.items():
        assert set(training[domain]) == set(recipe), domain
        for key, value in recipe.items():
            got = training[domain][key]
            assert got == value and type(got) is type(value), (domain, key, got, value)


def test_paper_tables_take_their_runs_from_the_paper_specs():
    raw = _load("config.yaml")
    assert not any(k in spec for spec in raw["tables"].values() for k in C.TABLE_RUNS)   # said once: in SPECS
    tables = C.validate(raw)["tables"]
    assert list(tables) == list(TABLE_RUNS_BEFORE)
    for t, lists in TABLE_RUNS_BEFORE.items():
        for key, value in zip(C.TABLE_RUNS, lists):
            assert tables[t][key] == value, (t, key)
        assert tables[t]["caption"] == raw["tables"][t]["caption"] and tables[t]["domain"] == raw["tables"][t]["domain"]


def test_resolution_is_idempotent_and_the_demo_lists_its_own():
    cfg = C.validate(_load("config.yaml"))
    assert C.validate(copy.deepcopy(cfg)) == cfg                       # the verbs validate the DAG's copy again
    demo = C.validate(_load("demo.yaml"))
    assert demo["tables"]["table3"]["backbones"] == ["tiny"] and demo["training"]["math"]["lr"] == 2e-3


@pytest.mark.parametrize("edit, problem", [
    (lambda c: c["training"].update(maths={"lr": 1e-5}), "config key 'training.maths': no domain 'maths' (did you "
                                                          "mean 'math'?)"),
    (lambda c: c["training"]["medical"].update(learning_rate=1e-5), "'training.medical.learning_rate': unknown key"),
    (lambda c: c["tables"]["table7"].update(benchmarks=["math500"]), "config key 'tables.table7.benchmarks': a "
                                                                     "paper_layout table shows the paper's runs"),
    (lambda c: c["tables"].update(mine={"domain": "math", "methods": ["sft"]}),
     "config key 'tables.mine': give its backbones, benchmarks, metrics"),
    (lambda c: c["domains"].update(default=c["domains"]["math"]), "config key 'domains.default': the name of the "
                                                                   "shared training recipe"),
])
def test_recipe_and_table_resolution_errors_name_the_key(edit, problem):
    cfg = _load("config.yaml")
    edit(cfg)
    assert problem in _invalid(cfg)


def test_a_paper_table_may_list_its_own_runs():
    """A table named after a paper table but not in its layout may show fewer runs (as the demo's Table 3 does)."""
    cfg = _load("config.yaml")
    cfg["tables"]["table3"]["benchmarks"] = ["math500"]
    assert C.validate(cfg)["tables"]["table3"]["benchmarks"] == ["math500"]
