"""The demo DAG end to end, through Snakemake, on a reduced configuration of config/demo.yaml."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prift.paths import Layout
from tests.conftest import REPO
from tests.dag import planned

pytestmark = pytest.mark.slow


def reduced_config(results_dir) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["results"] = str(results_dir)
    cfg["backbones"]["tiny"]["build"]["pretrain_steps"] = 80
    cfg["backbones"]["tiny"]["build"]["corpus"]["n"] = 1500
    cfg["domains"]["math"]["train"]["n"] = 192
    cfg["domains"]["math"]["benchmarks"] = ["math500", "aime24"]
    for b in cfg["benchmarks"].values():
        b["data"]["n"] = 6
    cfg["training"]["math"].update(epochs=1, global_batch_size=16, per_device_batch_size=8, save_steps=6)
    cfg["generation"]["max_new_tokens"] = 40
    cfg["evaluation"]["n_boot"] = 50
    cfg["analysis"].update(every=4, heldout=8)
    cfg["tables"]["table3"]["benchmarks"] = ["math500", "aime24"]
    # Table 5: DAPO from the SFT and PriFT-mass checkpoints, 2 steps each (the wiring, not the gain)
    cfg["rl"]["recipe"].update(steps=2, save_steps=1)
    cfg["rl"]["prompts"]["n"] = 64
    cfg["tables"]["table5"]["benchmarks"] = ["math500", "aime24"]
    return cfg


def snakemake(cfg_path, *args, timeout=900):
    p = subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", str(cfg_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return p


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    cfg = reduced_config(base / "results")
    path = base / "reduced.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = snakemake(path)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return base, path, cfg


def test_demo_produces_table3(demo_run):
    base, _, _ = demo_run
    csv = base / "results" / "tables" / "table3.csv"
    tex = base / "results" / "tables" / "table3.tex"
    assert csv.exists() and tex.exists()
    text = csv.read_text()
    for label in ("Original", "SFT", "DFT", "PriFT-prob", "PriFT-mass", "MATH-OAI", "AIME24", "Average"):
        assert label in text
    assert "—" not in text  # every cell measured
    assert "\\textbf{" in tex.read_text() and "\\underline{" in tex.read_text()
    # the metrics files the table was built from hold real, bounded numbers
    m = pd.read_json(base / "results" / "metrics" / "math" / "tiny" / "prift-mass" / "math500.json")
    avg = m.loc[m.metric == "avg@16", "value"].item()
    pas = m.loc[m.metric == "pass@16", "value"].item()
    assert 0 <= avg <= pas <= 100
    # every sample was graded: 6 problems × 16 samples
    grades = (base / "results" / "grades" / "math" / "tiny" / "dft" / "aime24.jsonl").read_text().splitlines()
    assert len(grades) == 6 * 16


def test_every_latex_table_of_the_demo_compiles(demo_run, pdflatex, tmp_path):
    """Each table the demo writes and its side by side with the paper (where config/paper has the table) compile
    with pdflatex, in one document."""
    base, _, cfg = demo_run
    tables = base / "results" / "tables"
    written = sorted(tables.glob("*.tex"))
    assert {p.name for p in written} == ({f"{t}{part}.tex" for t in cfg["tables"] for part in ("", "_paired")}
                                         | {f"{t}_vs_paper.tex" for t in cfg["tables"]
                                            if (REPO / "config" / "paper" / f"{t}.csv").exists()})
    assert {"table3.tex", "table3_vs_paper.tex", "table5.tex", "table5_vs_paper.tex", "table3_paired.tex"} <= {
        p.name for p in written}
    paired = pd.read_csv(base / "results" / "tables" / "table3_paired.csv")   # PriFT rows vs SFT and DFT
    assert set(zip(paired.method, paired.baseline)) == {(m, b) for m in ("prift-prob", "prift-mass")
                                                         for b in ("sft", "dft")}
    assert pdflatex(written, tmp_path / "doc").stat().st_size > 0


def test_demo_produces_table5_with_the_gain_over_the_sft_checkpoint(demo_run):
    base, _, _ = demo_run
    t5 = pd.read_csv(base / "results" / "tables" / "table5.csv")
    assert list(t5["Init."]) == ["SFT", "PriFT-mass"]
    for init, row in zip(("sft", "prift-mass"), t5.itertuples(index=False)):
        rl = [pd.read_json(base / "results" / "metrics" / "math" / "tiny" / f"{init}+rl" / f"{b}.json")
              for b in ("math500", "aime24")]
        pre = [pd.read_json(base / "results" / "metrics" / "math" / "tiny" / init / f"{b}.json")
               for b in ("math500", "aime24")]
        avg = lambda frames: sum(f.loc[f.metric == "avg@16", "value"].item() for f in frames) / len(frames)
        assert abs(row[2] - round(avg(rl), 2)) < 0.006                  # Avg@16 of the RL checkpoint
        assert abs(float(row[3]) - (avg(rl) - avg(pre))) < 0.011        # Δ = gain over the same checkpoint before RL
    assert (base / "results" / "rl" / "math" / "tiny" / "sft" / "final" / "config.json").exists()


def test_demo_figures_from_drift_probes(demo_run):
    base, _, _ = demo_run
    from prift.analysis import read_probes
    probes = read_probes(base / "results" / "sft" / "math" / "tiny" / "dft" / "final" / "probes.jsonl")
    assert probes[0]["step"] == 0 and probes[0]["pearson"] > 0.999 and probes[0]["kl_ref_online"] < 1e-6
    assert probes[-1]["step"] > 0 and probes[-1]["kl_ref_online"] > 0 and "entropy" in probes[-1]
    for fig in ("fig1a", "fig1b", "fig3a", "fig3c"):
        png = base / "results" / "figures" / "table3" / f"{fig}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.with_suffix(".pdf").exists()


def test_second_call_does_nothing(demo_run):
    _, path, _ = demo_run
    assert planned(path) == {}


def test_deleting_one_checkpoint_reruns_exactly_its_dependents(demo_run):
    base, path, cfg = demo_run
    import shutil
    L = Layout(cfg["results"])
    final = L.sft_final("math", "tiny", "dft")
    shutil.rmtree(final)
    # Snakemake 9 reruns a deleted intermediate output when it is named as a target (up-to-date downstream files
    # alone do not trigger it): `snakemake <deleted path> all`
    benches = cfg["tables"]["table3"]["benchmarks"]
    both = ("csv", "tex")
    # dft is no RL init, so Table 5 stays; Table 3, its paired comparisons, its side by side with the paper, its
    # figures, the cost summary, results/summary.md and the report's front page are redone
    assert planned(path, final, "all") == {
        "sft": {final},
        **{rule: {getattr(L, kind)("math", "tiny", "dft", b) for b in benches}
           for rule, kind in (("generate", "samples"), ("grade", "grades"), ("metrics", "metrics"))},
        "table": {L.table("table3", ext) for ext in both},
        "paired": {L.table("table3", ext, "_paired") for ext in both},
        "compare": {L.table("table3", ext, "_vs_paper") for ext in both} | {L.vs_paper_notes("table3")},
        "costs": {L.costs()}, "summary": {L.summary()}, "frontpage": {L.front_page()},
        "figures": {L.table_figure("table3", f, ext) for f in ("fig1a", "fig1b", "fig3a", "fig3c")
                    for ext in ("png", "pdf")}}
    p = snakemake(path, str(final), "all")
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]


def test_same_seed_same_table(demo_run, tmp_path):
    """Table 3 made again from nothing in another results folder (its own jobs only: backbone, reference pass, SFT,
    sampling, grading) is the same file."""
    base, _, cfg = demo_run
    cfg = dict(cfg, results=str(tmp_path / "results"))
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = snakemake(path, Layout(cfg["results"]).table("table3", "csv"))
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert (tmp_path / "results" / "tables" / "table3.csv").read_text() == \
        (base / "results" / "tables" / "table3.csv").read_text()


def test_a_second_seed_runs_only_its_own_jobs_and_the_tables_pool_both(demo_run, pdflatex, tmp_path):
    """The demo's finished runs, then `training.math.seeds: [0, 1]`: Table 3 and its comparisons need exactly the
    seed-1 runs of its four trained methods (SFT, sampling, grading, metrics; the first seed's runs, `original` and
    the reference pass are kept), and then show the mean over both seeds, its sd, and paired comparisons over both.
    Last in this module: it changes the demo run's Table 3."""
    import json
    import statistics
    base, _, cfg = demo_run
    L = Layout(cfg["results"])
    two = yaml.safe_load(yaml.safe_dump(cfg))
    two["training"]["math"]["seeds"] = [0, 1]
    path = tmp_path / "two_seeds.yaml"
    path.write_text(yaml.safe_dump(two))
    benches = cfg["tables"]["table3"]["benchmarks"]
    seeded = [f"{m}@seed=1" for m in ("sft", "dft", "prift-prob", "prift-mass")]
    targets = [L.table("table3", "csv"), L.table("table3", "csv", "_paired"), L.table("table3", "csv", "_vs_paper")]
    assert planned(path, *targets) == {
        "sft": {L.sft_final("math", "tiny", m) for m in seeded},
        **{rule: {getattr(L, kind)("math", "tiny", m, b) for m in seeded for b in benches}
           for rule, kind in (("generate", "samples"), ("grade", "grades"), ("metrics", "metrics"))},
        "table": {L.table("table3", ext) for ext in ("csv", "tex")},
        "paired": {L.table("table3", ext, "_paired") for ext in ("csv", "tex")},
        "compare": {L.table("table3", ext, "_vs_paper") for ext in ("csv", "tex")} | {L.vs_paper_notes("table3")}}
    p = snakemake(path, *targets)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    run = {m: json.loads((Path(L.sft_final("math", "tiny", m)) / "prift_run.json").read_text())
           for m in ("sft", "sft@seed=1")}
    assert run["sft"]["recipe"]["seed"] == 0 and run["sft@seed=1"]["recipe"]["seed"] == 1
    value = {m: next(r["value"] for r in json.loads(Path(L.metrics("math", "tiny", m, "math500")).read_text())
                     if r["metric"] == "avg@16") for m in ("sft", "sft@seed=1", "original")}
    table = pd.read_csv(targets[0], dtype=str, keep_default_na=False).set_index("Method")
    assert table.loc["SFT", "MATH-OAI Avg@16"] == f"{(value['sft'] + value['sft@seed=1']) / 2:.2f}"
    assert table.loc["SFT", "MATH-OAI Avg@16 sd"] == f"{statistics.stdev([value['sft'], value['sft@seed=1']]):.2f}"
    assert table.loc["Original", "MATH-OAI Avg@16"] == f"{value['original']:.2f}"
    assert table.loc["Original", "MATH-OAI Avg@16 sd"] == "—"
    paired = pd.read_csv(targets[1])
    assert len(paired) and (paired.n_seeds == 2).all()
    row = paired[(paired.method == "prift-mass") & (paired.baseline == "sft") & (paired.benchmark == "math500")
                 & (paired.metric == "avg@16")].iloc[0]
    assert row.baseline_value == pytest.approx((value["sft"] + value["sft@seed=1"]) / 2, abs=0.006)
    vs = pd.read_csv(targets[2], dtype=str, keep_default_na=False)
    ours = vs[(vs.backbone == "tiny") & (vs.method == "sft") & (vs.benchmark == "math500")
              & (vs.metric_key == "avg@16")]
    assert list(ours.ours) == [table.loc["SFT", "MATH-OAI Avg@16"]]                 # the side by side pools them too
    # the seed-1 samples are drawn from their own stream
    assert Path(L.samples("math", "tiny", "sft", "math500")).read_text() != \
        Path(L.samples("math", "tiny", "sft@seed=1", "math500")).read_text()
    tex = [L.table("table3", "tex", part) for part in ("", "_paired", "_vs_paper")]
    assert "\\pm$" in Path(tex[0]).read_text() and pdflatex(tex, tmp_path / "doc").stat().st_size > 0
