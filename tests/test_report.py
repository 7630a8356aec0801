"""The report's contents: stage costs from Snakemake benchmark files, and `snakemake --report` over a results tree."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prift import costs
from prift.cli import main as cli_main
from prift.io import write_json, write_jsonl
from prift.paths import Layout
from tests.conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, *rows):
    """A Snakemake benchmark TSV: one (seconds, max_rss MB or 'NA') line per repeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t0\t{s}\n" for s, rss in rows))
    return path


@pytest.fixture
def bench_tree(tmp_path):
    root = tmp_path / "benchmarks"
    bench(root / "sft" / "math" / "tiny" / "sft.tsv", (3600, 1000.5))
    bench(root / "sft" / "math" / "big" / "dft.tsv", (900, 2000), (900, 3000))     # two repeats: wall summed
    bench(root / "generate" / "math" / "tiny" / "sft" / "math500.tsv", (360, "NA"))
    bench(root / "build_backbone" / "tiny.tsv", (36, 500))
    return root


def test_costs_per_stage_and_gpu_hours(bench_tree):
    gpus = {"sft": 4, "sft/big": 8, "generate": 1, "build_backbone": 0}
    frame = costs.aggregate(sorted(bench_tree.rglob("*.tsv")), bench_tree, gpus).set_index("stage")
    assert list(frame.index) == ["build_backbone", "generate", "sft", "total"]
    sft = frame.loc["sft"]
    assert sft.jobs == 2 and sft.wall_h == pytest.approx(1.5) and sft.longest_job_h == pytest.approx(1.0)
    assert sft.max_rss_mb == 3000 and sft.gpus_per_job == "4/8"
    assert sft.gpu_hours == pytest.approx(1.0 * 4 + 0.5 * 8)          # per job: its own backbone's request
    gen = frame.loc["generate"]
    assert gen.gpu_hours == pytest.approx(0.1) and math.isnan(gen.max_rss_mb)
    assert frame.loc["build_backbone"].gpu_hours == 0
    total = frame.loc["total"]
    assert total.jobs == 4 and total.wall_h == pytest.approx((3600 + 1800 + 360 + 36) / 3600)
    assert total.gpu_hours == pytest.approx(8.1) and total.max_rss_mb == 3000
    assert math.isnan(total.disk_gb)                                     # no results root given


def test_costs_disk_per_stage_is_what_the_jobs_outputs_hold(bench_tree, tmp_path):
    """Disk per stage: a run's directory (final model and any checkpoints kept beside it), a sample file."""
    res = tmp_path / "results"
    (res / "sft" / "math" / "tiny" / "sft" / "final").mkdir(parents=True)
    (res / "sft" / "math" / "tiny" / "sft" / "final" / "model.safetensors").write_bytes(b"x" * 3000)
    (res / "sft" / "math" / "tiny" / "sft" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (res / "sft" / "math" / "tiny" / "sft" / "checkpoints" / "checkpoint-1" / "optimizer.pt").write_bytes(b"x" * 6000)
    (res / "sft" / "math" / "big" / "dft").mkdir(parents=True)
    (res / "sft" / "math" / "big" / "dft" / "model.safetensors").write_bytes(b"x" * 1000)
    (res / "samples" / "math" / "tiny" / "sft").mkdir(parents=True)
    samples = '{"id": "p", "sample": 0, "completion_tokens": 3}\n' * 10
    (res / "samples" / "math" / "tiny" / "sft" / "math500.jsonl").write_text(samples)
    (res / "samples" / "math" / "tiny" / "sft" / "math500x.jsonl").write_bytes(b"x" * 7)   # another job's
    frame = costs.aggregate(sorted(bench_tree.rglob("*.tsv")), bench_tree, {}, results=res).set_index("stage")
    assert frame.loc["sft", "disk_gb"] == pytest.approx(10_000 / 1e9)
    assert frame.loc["generate", "disk_gb"] == pytest.approx(len(samples) / 1e9)
    assert frame.loc["total", "disk_gb"] == pytest.approx((10_000 + len(samples)) / 1e9)


def test_costs_tokens_per_stage_are_what_the_jobs_outputs_say(tmp_path):
    """Tokens and tokens/s per stage: SFT from the run's prift_run.json, the reference pass from its cache's
    provenance (input_tokens), sampling from the completion tokens of its samples; stages whose outputs say nothing
    (grading) and runs without a count stay empty."""
    import torch
    from prift.scoring import save_scores
    res = tmp_path / "results"
    L = Layout(res)
    root = Path(L.timing_root())
    bench(Path(L.timing("sft", "math", "tiny", "sft")), (100, 1000))
    bench(Path(L.timing("sft", "math", "tiny", "dft")), (300, 1000))
    bench(Path(L.timing("score", "tiny", "tiny", "math")), (50, 800))
    bench(Path(L.timing("generate", "math", "tiny", "sft", "math500")), (20, 900))
    bench(Path(L.timing("grade", "math", "tiny", "sft", "math500")), (5, 100))
    write_json(Path(L.sft_final("math", "tiny", "sft")) / "prift_run.json", {"tokens": 12_000})
    write_json(Path(L.sft_final("math", "tiny", "dft")) / "prift_run.json", {"tokens": 36_000})
    stats = [{k: torch.zeros(4) for k in ("logp", "prob", "entropy", "entropy_topk", "mass", "rank")}]
    Path(L.scores("tiny", "tiny", "math")).parent.mkdir(parents=True)
    save_scores(L.scores("tiny", "tiny", "math"), stats, ["a"], {"input_tokens": 9_000})
    write_jsonl(L.samples("math", "tiny", "sft", "math500"),
                [{"id": "p", "sample": k, "completion_tokens": 100 + k} for k in range(4)])
    write_jsonl(L.grades("math", "tiny", "sft", "math500"), [{"id": "p", "sample": 0, "qwen": True}])
    frame = costs.aggregate(sorted(root.rglob("*.tsv")), root, {}, results=res).set_index("stage")
    assert frame.loc["sft", "tokens"] == 48_000 and frame.loc["sft", "tokens_per_s"] == pytest.approx(120.0)
    assert frame.loc["score", "tokens"] == 9_000 and frame.loc["score", "tokens_per_s"] == pytest.approx(180.0)
    assert frame.loc["generate", "tokens"] == 406 and frame.loc["generate", "tokens_per_s"] == pytest.approx(20.3)
    assert math.isnan(frame.loc["grade", "tokens"]) and math.isnan(frame.loc["grade", "tokens_per_s"])
    assert frame.loc["total", "tokens"] == 48_000 + 9_000 + 406
    text = costs.to_csv_text(frame.reset_index())
    assert text.splitlines()[0].endswith(",tokens,tokens_per_s") and ",48000,120.0" in text


def test_costs_verb_writes_the_csv_and_names_bad_files(bench_tree, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((REPO / "config" / "demo.yaml").read_text())
    out = tmp_path / "costs.csv"
    assert cli_main(["costs", "--config", str(cfg), "--benchmarks", str(bench_tree), "--out", str(out),
                     "--gpus", "sft=4", "generate=1"]) == 0
    written = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("stage")
    assert written.loc["sft", "gpu_hours"] == "6.0000" and written.loc["sft", "max_rss_mb"] == "3000"
    assert written.loc["generate", "max_rss_mb"] == "" and written.loc["total", "jobs"] == "4"
    (bench_tree / "score").mkdir()
    (bench_tree / "score" / "broken.tsv").write_text("not\ta\tbenchmark\n")
    with pytest.raises(ValueError, match="broken.tsv"):
        costs.aggregate(sorted(bench_tree.rglob("*.tsv")), bench_tree, {})
    with pytest.raises(ValueError, match="STAGE=N"):
        costs.parse_gpus(["sft:4"])


# ----------------------------------------------------------------------------------------------------------------------
# the report over a small results tree made by hand: metrics and benchmark files written here, the table / compare /
# costs / config rules run by Snakemake on them (no training), then `snakemake --report` (HTML and zip)

METHODS, BENCHES = ("original", "sft"), ("math500", "aime24")


def report_config(results) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["results"] = str(results)
    for key in ("rl", "figures"):
        cfg.pop(key, None)
    # drift probes on, so that the table's mechanism figures are part of the DAG (written by hand in the test)
    cfg["analysis"] = dict(cfg["analysis"], tables=["table3"])
    cfg["tables"] = {"table3": dict(cfg["tables"]["table3"], methods=list(METHODS), benchmarks=list(BENCHES),
                                    paired={"methods": ["sft"], "baselines": ["original"]})}
    return cfg


RED = (255, 0, 0)


def red_figures(results):
    """The mechanism figures of table3 (rule `figures`' outputs, not run here): PNGs of one pure red square each,
    which a screenshot of the report can find."""
    from PIL import Image
    L = Layout(results)
    for fig in ("fig1a", "fig1b", "fig3a", "fig3c"):
        for ext in ("png", "pdf"):
            path = Path(L.table_figure("table3", fig, ext))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (240, 160), RED).save(path)


def snakemake(cfg_path, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "1", "--configfile", str(cfg_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_report_holds_tables_side_by_side_costs_and_config(tmp_path):
    results = tmp_path / "results"
    L = Layout(results)
    cfg = report_config(results)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    for i, m in enumerate(METHODS):
        for b in BENCHES:
            recs = [{"run": f"math/tiny/{m}", "domain": "math", "backbone": "tiny", "method": m, "variant": "",
                     "benchmark": b, "metric": metric, "value": v + i, "ci_low": v + i - 1, "ci_high": v + i + 1,
                     "n_problems": 24} for metric, v in (("avg@16", 10.0), ("pass@16", 40.0))]
            write_json(L.metrics("math", "tiny", m, b), recs)
            # and the grades the paired comparisons read: problem p solved by p % 16 (+ i) of its 16 samples
            write_jsonl(L.grades("math", "tiny", m, b), [
                {"id": f"{b}-{p}", "sample": k, "qwen": k < p % 16 + i, "math_verify": k < p % 16 + i}
                for p in range(24) for k in range(16)])
    bench(Path(L.timing("sft", "math", "tiny", "sft")), (720, 900))
    bench(Path(L.timing("score", "tiny", "math")), (180, 800))

    red_figures(results)
    run = snakemake(cfg_path, "--allowed-rules", "table", "paired", "compare", "costs", "config_used", "summary",
                    "frontpage", "all")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    tables = results / "tables"
    # the summary and the front page, written by their rules from the paired comparisons
    summary = (results / "summary.md").read_text()
    assert summary.startswith("# What this run shows") and "## table3" in summary, summary[:500]
    assert "- SFT vs Original (Tiny-Qwen2 (demo), avg@16): +6.25 points" in summary, summary   # in a sentence
    front = (results / "report" / "front.rst").read_text()
    assert front.startswith("Main table: table3") and front.count("data:image/png;base64,") == 4
    assert "SFT vs Original" in front
    vs = pd.read_csv(tables / "table3_vs_paper.csv", dtype=str, keep_default_na=False)
    tiny = vs[vs.backbone == "tiny"]
    assert len(vs[vs.backbone != "tiny"]) == 18 * 12 and set(tiny.paper) == {"—"}
    assert tiny[(tiny.row == "SFT") & (tiny.column == "MATH-OAI") & (tiny.metric == "Avg@16")].ours.item() == "11.00"
    cost = pd.read_csv(tables / "costs.csv", dtype=str, keep_default_na=False).set_index("stage")
    # GPUs from the resource table (workflow/profiles/default/resources.yaml): sft 4, score 1 on the tiny model
    assert cost.loc["sft", "gpus_per_job"] == "4" and cost.loc["sft", "gpu_hours"] == "0.8000"
    assert cost.loc["score", "gpu_hours"] == "0.0500" and cost.loc["total", "jobs"] == "2"
    used = json.loads((results / "report" / "config.json").read_text())
    assert used["results"] == str(results) and list(used["tables"]) == ["table3"]

    html = tmp_path / "report.html"
    run = snakemake(cfg_path, "--report", str(html))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    text = html.read_text()
    for needle in ("table3_vs_paper.csv", "table3_vs_paper.tex", "table3_vs_paper.footnotes.md", "table3.csv",
                   "costs.csv", "config.json", "Tables", "Costs", "Config", "gpu_hours", "Cost of each stage",
                   "Config used"):
        assert needle in text, needle
    assert f"&quot;results&quot;: &quot;{results}&quot;" in text or f'"results": "{results}"' in text
    assert "Main table" in text and "Paired comparisons" in text
    zipped = tmp_path / "report.zip"
    run = snakemake(cfg_path, "--report", str(zipped))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    names = zipfile.ZipFile(zipped).namelist()
    assert any(n.endswith("report.html") for n in names)
    assert any(n.endswith("table3_vs_paper.csv") for n in names) and any(n.endswith("costs.csv") for n in names)


@pytest.mark.slow
def test_report_opens_on_the_results_in_a_browser(tmp_path, chromium):
    """The report, rendered by headless Chromium, opens on the main table (a value of table3.csv is on the page), its
    paired comparisons and the mechanism figures (the red squares are on the screenshot)."""
    from PIL import Image
    results = tmp_path / "results"
    L = Layout(results)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(report_config(results)))
    for i, m in enumerate(METHODS):
        for b in BENCHES:
            write_json(L.metrics("math", "tiny", m, b), [
                {"run": f"math/tiny/{m}", "domain": "math", "backbone": "tiny", "method": m, "variant": "",
                 "benchmark": b, "metric": metric, "value": v + 7.25 * i, "ci_low": v - 1, "ci_high": v + 9,
                 "n_problems": 24} for metric, v in (("avg@16", 10.5), ("pass@16", 40.5))])
            write_jsonl(L.grades("math", "tiny", m, b), [
                {"id": f"{b}-{p}", "sample": k, "qwen": k < p % 16 + i, "math_verify": k < p % 16 + i}
                for p in range(24) for k in range(16)])
    red_figures(results)
    run = snakemake(cfg_path, "--allowed-rules", "table", "paired", "compare", "costs", "config_used", "summary",
                    "frontpage", "all")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    html = tmp_path / "report.html"
    run = snakemake(cfg_path, "--report", str(html))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    table = pd.read_csv(L.table("table3", "csv"), dtype=str, keep_default_na=False)
    value = "17.75"   # SFT's Avg@16 on both benchmarks: 10.5 + 7.25
    assert value in table.to_csv()
    dom, png = chromium(html, tmp_path)
    import re
    visible = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    assert "Main table: table3" in visible and "Paired comparisons" in visible
    assert value in visible and "Avg@16" in visible and "mailto:" not in visible   # a metric, not an e-mail link
    assert visible.count("data:image/png;base64,") >= 4
    shot = Image.open(png).convert("RGB")
    red = sum(1 for px in shot.getdata() if px == RED)
    assert red > 240 * 160 * 0.5, f"no figure visible on the report's first screen ({red} red pixels)"


def test_one_caption_per_figure_of_the_figure_rule():
    """Rule `figure` makes every figure of `figures:` and has one caption file; Snakemake renders it with Jinja for
    each job (trim_blocks, lstrip_blocks, `snakemake.wildcards`): each figure gets its own text."""
    from types import SimpleNamespace

    from jinja2 import Environment
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    caption = (REPO / "workflow" / "report" / "figure.rst").read_text()
    figures = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["figures"]
    texts = {}
    for fig in figures:
        text = env.from_string(caption).render(snakemake=SimpleNamespace(wildcards=SimpleNamespace(figure=fig)))
        texts[fig] = text.strip()
        assert texts[fig].startswith(f"Fig. {fig[3:]}"), (fig, texts[fig][:40])
    assert len(set(texts.values())) == len(figures)
