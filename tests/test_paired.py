"""Paired comparisons of a table's methods (prift paired): the pairs chosen by default and by the config, Δ and its
interval from the grades, Holm's correction over the table, the paper's own difference beside ours."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from prift import metrics as M
from prift.cli import main as cli_main
from prift.tables import paired as P
from tests.conftest import REPO


def test_default_pairs_are_prift_rows_against_sft_dft_and_the_strongest_other():
    methods = ["original", "sft", "dft", "eaft", "idft", "prift-prob", "prift-mass"]
    scores = {"original": 90.0, "sft": 10, "dft": 12, "eaft": 30, "idft": 20, "prift-prob": 25, "prift-mass": 26}
    assert P.default_pairs(methods, scores) == [(m, b) for m in ("prift-prob", "prift-mass")
                                                 for b in ("sft", "dft", "eaft")]
    rl = ["sft+rl", "dft+rl", "prift-prob+rl", "prift-mass+rl"]
    assert P.default_pairs(rl, {m: 1.0 for m in rl}) == [(m, b) for m in ("prift-prob+rl", "prift-mass+rl")
                                                         for b in ("sft+rl", "dft+rl")]


def _grades(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def table(tmp_path):
    """The demo's Table 3 shape on two benchmarks with made-up grades: PriFT-mass solves every problem one sample more
    often than DFT (a consistent gain), PriFT-prob as often as SFT."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["tables"]["table3"]["benchmarks"] = ["math500", "aime24"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rng = np.random.default_rng(0)
    base = {b: rng.integers(1, 14, size=24) for b in ("math500", "aime24")}   # correct samples of 16, per problem
    extra = {"original": -1, "sft": 0, "dft": 0, "prift-prob": 0, "prift-mass": 1}
    files, counts = [], {}
    for m, e in extra.items():
        for b in ("math500", "aime24"):
            c = np.clip(base[b] + e, 0, 16)
            counts[(m, b)] = c
            f = tmp_path / "results" / "grades" / "math" / "tiny" / m / f"{b}.jsonl"
            _grades(f, [{"id": f"{b}-{i}", "sample": s, "qwen": bool(s < c[i]), "math_verify": bool(s < c[i])}
                        for i in range(24) for s in range(16)])
            files.append(str(f))
    return path, files, counts, tmp_path


def test_paired_verb_from_grades(table):
    path, files, counts, tmp = table
    assert cli_main(["paired", "--config", str(path), "--table", "table3", "--grades", *files, "--out-csv",
                     str(tmp / "p.csv"), "--out-tex", str(tmp / "p.tex")]) == 0
    frame = pd.read_csv(tmp / "p.csv")
    # PriFT-prob and PriFT-mass against SFT and DFT (no other baseline in the demo), 2 metrics × (2 benchmarks + avg)
    assert set(zip(frame.method, frame.baseline)) == {(m, b) for m in ("prift-prob", "prift-mass")
                                                       for b in ("sft", "dft")}
    assert len(frame) == 4 * 2 * 3
    row = frame[(frame.method == "prift-mass") & (frame.baseline == "dft") & (frame.benchmark == "average")
                & (frame.metric == "avg@16")].iloc[0]
    want = 100 * np.mean([(np.clip(counts[("prift-mass", b)], 0, 16) - counts[("dft", b)]).mean() / 16
                          for b in ("math500", "aime24")])
    assert row.delta == pytest.approx(want, abs=0.006) and row.significant and row.ci_low > 0
    same = frame[(frame.method == "prift-prob") & (frame.baseline == "sft")]
    assert (same.delta == 0).all() and (same.p == 1).all() and not same.significant.any()
    # Holm over the table's 24 comparisons
    assert np.allclose(frame.p_holm, M.holm(frame.p.tolist()), atol=1e-4)
    tex = (tmp / "p.tex").read_text()
    assert "PriFT-mass vs DFT" in tex and "\\textbf{" in tex


def test_configured_pairs_and_the_papers_difference(table):
    path, files, counts, tmp = table
    cfg = yaml.safe_load(path.read_text())
    cfg["tables"]["table3"]["paired"] = {"methods": ["prift-mass"], "baselines": ["original"]}
    path.write_text(yaml.safe_dump(cfg))
    paper = tmp / "paper.csv"
    paper.write_text("backbone,method,variant,benchmark,metric,value,mark\n"
                     "tiny,prift-mass,,average,avg@16,31.5,\ntiny,original,,average,avg@16,20.25,\n")
    assert cli_main(["paired", "--config", str(path), "--table", "table3", "--grades", *files, "--paper", str(paper),
                     "--out-csv", str(tmp / "p.csv"), "--out-tex", str(tmp / "p.tex")]) == 0
    frame = pd.read_csv(tmp / "p.csv")
    assert set(zip(frame.method, frame.baseline)) == {("prift-mass", "original")}
    avg = frame[(frame.benchmark == "average") & (frame.metric == "avg@16")].iloc[0]
    assert avg.paper_delta == pytest.approx(11.25)
    assert frame[frame.benchmark != "average"].paper_delta.isna().all()
    cfg["tables"]["table3"]["paired"] = {"baselines": ["dfft"]}
    path.write_text(yaml.safe_dump(cfg))
    from prift import config as C
    with pytest.raises(C.ConfigError, match=r"tables\.table3\.paired\.baselines.*'dfft'.*did you mean 'dft'"):
        C.load(path)


def test_summary_says_what_is_and_is_not_significant(table):
    """results/summary.md is written from the paired comparisons: the significant average differences, the others,
    and the per-benchmark counts, with the labels of the config."""
    path, files, counts, tmp = table
    assert cli_main(["paired", "--config", str(path), "--table", "table3", "--grades", *files, "--out-csv",
                     str(tmp / "table3_paired.csv"), "--out-tex", str(tmp / "p.tex")]) == 0
    assert cli_main(["summary", "--config", str(path), "--paired", str(tmp / "table3_paired.csv"), "--out",
                     str(tmp / "summary.md")]) == 0
    text = (tmp / "summary.md").read_text()
    frame = pd.read_csv(tmp / "table3_paired.csv")
    sig = frame[(frame.benchmark == "average") & frame.significant]
    assert len(sig) and all(f"{r.delta:+.2f} points" in text for r in sig.itertuples())
    assert "Significant on the average" in text and "Not significant on the average" in text
    assert "PriFT-mass vs DFT (Tiny-Qwen2 (demo), avg@16)" in text
    head, rest = text.split("Not significant on the average", 1)
    assert "PriFT-prob vs SFT" in rest and "PriFT-prob vs SFT" not in head     # Δ = 0: never significant


def test_front_page_holds_the_main_table_its_comparisons_and_the_figures(table):
    """The report's front page: the main table's rows, the paired comparisons on the average, the figures inside the
    page (PNG data, so that the report stands alone), all as reStructuredText that docutils renders."""
    import base64
    from docutils.core import publish_parts
    path, files, counts, tmp = table
    assert cli_main(["paired", "--config", str(path), "--table", "table3", "--grades", *files, "--out-csv",
                     str(tmp / "table3_paired.csv"), "--out-tex", str(tmp / "p.tex")]) == 0
    (tmp / "table3.csv").write_text("Model,Method,Avg@16\nTiny,SFT,12.34\nTiny,PriFT-mass,23.45\n")
    png = tmp / "fig1a.png"
    png.write_bytes(base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="))
    out = tmp / "front.rst"
    assert cli_main(["frontpage", "--config", str(path), "--table", "table3", "--table-csv", str(tmp / "table3.csv"),
                     "--paired-csv", str(tmp / "table3_paired.csv"), "--figures", str(png), str(tmp / "missing.png"),
                     "--out", str(out)]) == 0
    html = publish_parts(out.read_text(), writer_name="html")["html_body"]
    assert "23.45" in html and "PriFT-mass vs DFT" in html and 'src="data:image/png;base64,' in html
    assert html.count("<img") == 1     # a figure not drawn is left out


def test_paired_comparisons_pool_the_seeds(table):
    """With training.math.seeds [0, 1], the seed-1 runs (`<m>@seed=1`) join the comparison: Δ is the mean over both
    seeds and the problems, `n_seeds` 2; a baseline of one run (Original) stands against every seed."""
    path, files, counts, tmp = table
    cfg = yaml.safe_load(path.read_text())
    cfg["training"]["math"]["seeds"] = [0, 1]
    cfg["tables"]["table3"]["paired"] = {"methods": ["prift-mass"], "baselines": ["dft", "original"]}
    path.write_text(yaml.safe_dump(cfg))
    shift = {"dft": -2, "prift-mass": 1, "sft": 0, "prift-prob": 0}      # seed 1 solves this many samples more
    for m, e in shift.items():
        for b in ("math500", "aime24"):
            c = np.clip(counts[(m, b)] + e, 0, 16)
            counts[(f"{m}@seed=1", b)] = c
            f = tmp / "results" / "grades" / "math" / "tiny" / f"{m}@seed=1" / f"{b}.jsonl"
            _grades(f, [{"id": f"{b}-{i}", "sample": s, "qwen": bool(s < c[i]), "math_verify": bool(s < c[i])}
                        for i in range(24) for s in range(16)])
            files.append(str(f))
    assert cli_main(["paired", "--config", str(path), "--table", "table3", "--grades", *files, "--out-csv",
                     str(tmp / "table3_paired.csv"), "--out-tex", str(tmp / "p.tex")]) == 0
    frame = pd.read_csv(tmp / "table3_paired.csv")
    assert (frame.n_seeds == 2).all() and set(frame.baseline) == {"dft", "original"}

    def avg(m, b):   # the Avg@16 of one run on one benchmark, in points
        return 100 * counts[(m, b)].mean() / 16
    for base in ("dft", "original"):
        row = frame[(frame.baseline == base) & (frame.benchmark == "average") & (frame.metric == "avg@16")].iloc[0]
        want = np.mean([np.mean([avg(f"prift-mass{s}", b) - avg(base if base == "original" else f"{base}{s}", b)
                                 for s in ("", "@seed=1")]) for b in ("math500", "aime24")])
        assert row.delta == pytest.approx(want, abs=0.006), base
        assert row.ci_low <= row.delta <= row.ci_high
    assert cli_main(["summary", "--config", str(path), "--paired", str(tmp / "table3_paired.csv"), "--out",
                     str(tmp / "summary.md")]) == 0
    assert "Each method ran 2 times (seeds)" in (tmp / "summary.md").read_text()


def test_with_seeds_significant_needs_the_interval_to_exclude_zero_too():
    """Two seeds of a method, one solving 5 of 10 samples of every problem (as the baseline), one 6 of 10: each
    problem's seed-averaged difference is +0.05, so the permutation test (models fixed) is certain, but the interval,
    which resamples the seeds, is [0, 10] points: not called significant. The second seed alone is."""
    ids = [f"p{i}" for i in range(20)]

    def runs(*solved):
        return [(ids, np.array([[s < k for s in range(10)] for _ in ids])) for k in solved]
    cells = {("tiny", "a", "x"): runs(5, 6), ("tiny", "b", "x"): runs(5, 5)}
    frame = P.paired_frame(cells, {"tiny": [("a", "b")]}, ["x"], ["avg@10"], n_boot=4000)
    assert (frame.n_seeds == 2).all() and (frame.delta.round(9) == 5).all()
    assert (frame.p_holm < 0.01).all() and (frame.ci_low.round(9) == 0).all() and not frame.significant.any()
    one = {("tiny", "a", "x"): runs(6), ("tiny", "b", "x"): runs(5)}
    assert P.paired_frame(one, {"tiny": [("a", "b")]}, ["x"], ["avg@10"]).significant.all()
