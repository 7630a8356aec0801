"""Figures render from probe records (PNG + PDF), with one record per step after de-duplication."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from prift.figures import FIGURES, _dedupe


def _records(seed, drift):
    rng = random.Random(seed)
    recs = []
    for step in range(0, 50, 10):
        d = drift * step / 50
        recs.append({"step": step, "pearson": 1 - d, "spearman": 1 - 0.8 * d, "mae": 0.2 * d,
                     "median_p_by_bin": sorted(rng.random() for _ in range(5)), "kl_ref_online": d,
                     "entropy_mean": 1 - d})
    recs.append(dict(recs[-1], entropy=[rng.random() for _ in range(200)],
                     ref_entropy=[rng.random() * 2 for _ in range(200)]))
    return recs


def test_dedupe_keeps_last_record_per_step():
    recs = _records(0, 0.5)
    d = _dedupe(recs)
    assert [r["step"] for r in d] == [0, 10, 20, 30, 40] and "entropy" in d[-1]


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_renders(name, tmp_path):
    runs = {"DFT": _records(0, 0.6), "PriFT-prob": _records(1, 0.2)}
    paths = FIGURES[name](runs, tmp_path / name)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------------------------
# Fig. 3b, 4, 5 and the sweeps (1c, 6a, 6b): the values each line/image holds, checked on the figure itself

import json
import math
import subprocess
import sys

import numpy as np
import yaml

from prift import config as C
from prift import figures as F
from prift import sweeps as S
from prift.paths import Layout, parse_eval, parse_run
from tests.conftest import REPO
from tests.dag import planned


@pytest.fixture
def drawn(monkeypatch):
    """Keeps the matplotlib figure each drawing function saves (the files are still written)."""
    figs = []
    save = F._save

    def keep(fig, stem):
        figs.append(fig)
        return save(fig, stem)

    monkeypatch.setattr(F, "_save", keep)
    return figs


def _files_ok(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"


def test_fig4_one_line_style_per_run(tmp_path, drawn):
    runs = {"DFT": _records(0, 0.6), "SFT": _records(1, 0.2)}
    _files_ok(F.fig4(runs, tmp_path / "fig4"))
    ax_pearson, ax_bins = drawn[0].axes[0], drawn[0].axes[3]
    lines = ax_pearson.get_lines()
    assert [l.get_linestyle() for l in lines] == ["-", "--"]
    assert list(lines[1].get_ydata()) == [r["pearson"] for r in _dedupe(runs["SFT"])]
    assert len(ax_bins.get_lines()) == 10  # 5 bins × 2 runs
    assert list(ax_bins.get_lines()[7].get_ydata()) == [r["median_p_by_bin"][2] for r in _dedupe(runs["SFT"])]


def test_fig5_heat_map_rows_are_probe_steps(tmp_path, drawn):
    def recs(scale):
        return [{"step": s, "token_p": [[min(1.0, scale * s * (t + 1) / 100) for t in range(30)], [0.5] * 7]}
                for s in (0, 10, 20)]
    _files_ok(F.fig5({"DFT": recs(1.0), "SFT": recs(0.3)}, tmp_path / "fig5", example=0, max_tokens=20))
    img = np.asarray(drawn[0].axes[1].get_images()[0].get_array())
    assert img.shape == (3, 20)
    assert img[2, 4] == pytest.approx(0.3 * 20 * 5 / 100)
    steps, rows = F.token_matrix(recs(1.0), example=1)
    assert steps == [0, 10, 20] and rows == [[0.5] * 7] * 3
    with pytest.raises(ValueError, match="example 2"):
        F.token_matrix(recs(1.0), example=2)


def _write_grades(path, mat):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"p{i}", "sample": j, "qwen": bool(v), "math_verify": bool(v)} for i, r in enumerate(mat)
            for j, v in enumerate(r)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _pass_at_k(n, c, k):  # the definition, by binomial coefficients
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_curves_average_benchmarks(tmp_path, drawn):
    rng = np.random.default_rng(0)
    mats = {(m, b): rng.random((5, 8)) < q for m, q in (("dft", 0.5), ("prift-prob", 0.2)) for b in ("a", "b")}
    paths = []
    for (m, b), mat in mats.items():
        paths.append(tmp_path / "grades" / "math" / "tiny" / m / f"{b}@n=8.jsonl")
        _write_grades(paths[-1], mat.tolist())
    curves = F.pass_at_k_curves(paths)
    for m in ("dft", "prift-prob"):
        assert sorted(curves[m]) == list(range(1, 9))
        for k in (1, 3, 8):
            want = np.mean([np.mean([_pass_at_k(8, int(c), k) for c in mats[(m, b)].sum(1)]) for b in "ab"])
            assert curves[m][k] == pytest.approx(100 * want)
    _files_ok(F.fig3b({"DFT": curves["dft"]}, tmp_path / "fig3b"))
    line = drawn[0].axes[0].get_lines()[0]
    assert list(line.get_xdata()) == list(range(1, 9)) and line.get_ydata()[0] == pytest.approx(curves["dft"][1])
    _write_grades(tmp_path / "other.jsonl", [[True] * 4])
    with pytest.raises(ValueError, match="4 samples per problem"):
        F.pass_at_k_curves(paths + [tmp_path / "other.jsonl"])


# -- config: the sweeps as ordinary methods

def _demo_with_figures(**figs) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["figures"] = figs
    return cfg


BENCH = ["math500", "aime24"]


def test_sweeps_expand_into_ordinary_methods():
    cfg = C.validate(_demo_with_figures(
        fig6a={"domain": "math", "backbone": "tiny", "method": "prift-prob", "rhos": [0, 0.9, 1], "benchmarks": BENCH,
               "metric": "pass@16"},
        fig6b={"domain": "math", "backbone": "tiny", "method": "prift-mass", "taus": [0, 0.5], "benchmarks": BENCH,
               "metric": "avg@16"},
        fig1c={"domain": "math", "backbone": "tiny", "method": "prift-prob", "baseline": "dft",
               "reference_methods": ["dft"], "sizes": [0, 200], "benchmarks": BENCH, "metric": "avg@16"},
        fig3b={"domain": "math", "backbone": "tiny", "methods": ["dft"], "benchmarks": BENCH, "n": 32}))
    m = cfg["methods"]
    # ρ = 0 and ρ = 1 are the existing online / pretrained methods; 0 < ρ < 1 an EMA source
    assert [p["method"] for p in S.sweep_points(cfg, "fig6a")] == ["dft", "prift-prob@rho=0.9", "prift-prob"]
    assert m["prift-prob@rho=0.9"] == {"label": "PriFT-prob (EMA ρ=0.9)", "rule": "prob", "source": "ema",
                                       "ema_rho": 0.9}
    assert m["prift-mass@tau=0"]["params"] == {"tau": 0, "strict": True}
    assert m["prift-mass@tau=0.5"]["source"] == "pretrained"
    # Fig. 1c: a reference domain on the first 200 examples, a backbone whose weights are a DFT run on it, and the
    # downstream method reading that backbone's cached statistics
    assert cfg["domains"]["math@ref200"]["train"] == {"generator": "demo_math", "split": "train", "n": 1024,
                                                      "limit": 200}
    assert cfg["training"]["math@ref200"] == cfg["training"]["math"]
    assert cfg["backbones"]["tiny+dft@200"]["run"] == {"domain": "math@ref200", "backbone": "tiny", "method": "dft"}
    assert C.backbone_path(cfg, "tiny+dft@200") == "results/sft/math@ref200/tiny/dft/final"
    assert m["prift-prob@ref=dft200"] | {"label": ""} == {"label": "", "rule": "prob", "source": "reference",
                                                          "reference": "tiny+dft@200"}
    assert C.reference_of(cfg, "tiny", "prift-prob@ref=dft200") == "tiny+dft@200"
    # Fig. 3b: the benchmarks sampled n = 32 times
    assert cfg["benchmarks"]["math500@n=32"]["generation"] == {"n": 32}
    assert S.figure_inputs(cfg, "fig3b") == [f"results/grades/math/tiny/dft/{b}@n=32.jsonl" for b in BENCH]
    assert "results/metrics/math/tiny/dft/aime24.json" in S.figure_inputs(cfg, "fig1c")  # the baseline
    # the sft code accepts every added method; validating the expanded config again changes nothing
    from prift.sft import Method
    for name in m:
        Method.from_config(name, m[name])
    assert C.validate(json.loads(json.dumps(cfg))) == cfg


@pytest.mark.parametrize("fig, change, message", [
    ("fig6b", {"method": "prift-prob"}, "'figures.fig6b.method': the τ sweep needs a method of rule 'mass'"),
    ("fig6b", {"metric": "pass@64"}, "'figures.fig6b.metric': benchmark 'math500' has no metric 'pass@64'"),
    ("fig6b", {"benchmarks": ["math5000"]}, "'figures.fig6b.benchmarks': unknown benchmark 'math5000' (did you mean"),
    ("fig6b", {"taus": [1.5]}, "'figures.fig6b.taus.0'"),
    ("fig6b", {"tau": [0.5]}, "'figures.fig6b.tau': unknown key"),
    ("fig6b", {"backbone": "tiny2"}, "'figures.fig6b.backbone': unknown backbone 'tiny2'"),
])
def test_figure_config_errors_name_the_field(fig, change, message):
    f = {"domain": "math", "backbone": "tiny", "method": "prift-mass", "taus": [0, 0.5], "benchmarks": BENCH,
         "metric": "avg@16"} | change
    with pytest.raises(C.ConfigError) as e:
        C.validate(_demo_with_figures(**{fig: f}))
    assert message in str(e.value)


def test_probe_figures_read_the_runs_probes(tmp_path):
    with pytest.raises(C.ConfigError, match=r"'figures.fig4.backbone': unknown backbone 'tinyy' \(did you mean"):
        C.validate(_demo_with_figures(fig4={"domain": "math", "backbone": "tinyy", "methods": ["dft", "sft"]}))
    cfg = C.validate(_demo_with_figures(fig5={"domain": "math", "backbone": "tiny", "methods": ["dft", "sft"]}))
    cfg["results"] = str(tmp_path)
    dirs = S.figure_inputs(cfg, "fig5")
    assert dirs == [f"{tmp_path}/sft/math/tiny/{m}/final" for m in ("dft", "sft")]
    for d, scale in zip(dirs, (1.0, 0.2)):
        Path(d).mkdir(parents=True)
        Path(d, "probes.jsonl").write_text("".join(json.dumps({"step": s, "token_p": [[scale * s / 20] * 5]}) + "\n"
                                                   for s in (0, 10, 20)))
    _files_ok(F.render(cfg, "fig5", dirs, tmp_path / "fig5"))
    Path(dirs[1], "probes.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="no drift probes"):
        F.render(cfg, "fig5", dirs, tmp_path / "fig5")


def test_sweep_figure_plots_the_benchmark_mean(tmp_path, drawn):
    """render() reads metrics files: each point is the unweighted mean over the benchmarks of its run."""
    cfg = C.validate(_demo_with_figures(fig6b={"domain": "math", "backbone": "tiny", "method": "prift-mass",
                                               "taus": [0, 0.5, 1], "benchmarks": BENCH, "metric": "avg@16"}))
    cfg["results"] = str(tmp_path)
    paths = S.figure_inputs(cfg, "fig6b")
    assert len(paths) == 6
    for i, p in enumerate(map(Path, paths)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps([{"metric": "avg@16", "value": 10.0 * i}, {"metric": "pass@16", "value": -1}]))
    _files_ok(F.render(cfg, "fig6b", paths, tmp_path / "fig6b"))
    line = drawn[0].axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [5.0, 25.0, 45.0]   # (0+10)/2, (20+30)/2, (40+50)/2
    assert [t.get_text() for t in drawn[0].axes[0].get_xticklabels()] == ["0", "0.5", "1"]


def test_paper_config_dry_run_lists_the_figure_jobs():
    figs = ("fig1c", "fig3b", "fig6a", "fig6b")
    L = Layout("results")
    jobs = planned(REPO / "config" / "config.yaml", *(L.figure(f, "png") for f in figs))
    assert jobs["figure"] == {L.figure(f, ext) for f in figs for ext in ("png", "pdf")}   # one rule, every figure
    sft = {parse_run(p) for p in jobs["sft"]}
    assert {("math", "qwen2.5-math-1.5b", f"prift-mass@tau={t}") for t in ("0", "0.1", "0.5", "1")} <= sft
    assert {("math", "qwen2.5-math-1.5b", f"prift-prob@rho={r}") for r in ("0.9", "0.99", "0.999")} <= sft
    # Fig. 1c: the references are DFT and SFT runs on the first 2k … examples after the downstream 10k
    assert ("medical-lowdata@ref2000", "llama-2-7b", "dft") in sft and ("medical-lowdata@ref16000", "llama-2-7b",
                                                                         "sft") in sft
    assert ("medical-lowdata", "llama-2-7b", "prift-prob@ref=sft4000") in sft
    assert L.scores("llama-2-7b+dft@8000", "llama-2-7b", "medical-lowdata") in jobs["score"]
    samples = {parse_eval(p)[2:] for p in jobs["generate"] if parse_eval(p)[:2] == ("math", "qwen2.5-math-7b")}
    assert samples == {(m, f"{b}@n=64") for m in ("sft", "dft", "prift-prob", "prift-mass")
                       for b in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}
    assert len(jobs["sft"]) == 34  # 18 (Fig. 1c) + 4 (3b) + 5 (6a, with dft and prift-prob) + 7 (6b)


@pytest.mark.slow
def test_fig1c_reduced_real_run(tmp_path, tiny_backbone):
    """Fig. 1c end to end on the tiny backbone: a DFT reference fine-tuned on 64 examples becomes the frozen
    statistics source of a new run (its own reference pass), next to the pretrained source and the online baseline."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["backbones"]["tiny"] = {"label": "tiny", "path": str(tiny_backbone)}  # built once per test session
    cfg["domains"]["math"]["train"]["n"] = 96
    cfg["domains"]["math"]["benchmarks"] = ["math500"]
    cfg["benchmarks"] = {"math500": dict(cfg["benchmarks"]["math500"], data={"generator": "demo_math",
                                                                          "split": "math500", "n": 6})}
    cfg["training"]["math"].update(epochs=1, global_batch_size=16, per_device_batch_size=16, save_steps=100)
    cfg["generation"].update(n=2, max_new_tokens=32)
    cfg["evaluation"] = {"k": 2, "n_boot": 20}
    cfg["analysis"] = {"every": 0}
    cfg.pop("rl", None)
    cfg["tables"] = {"table3": dict(cfg["tables"]["table3"], methods=["original"], benchmarks=["math500"],
                                    metrics={"avg@2": "Avg@2"})}
    cfg["figures"] = {"fig1c": {"domain": "math", "backbone": "tiny", "method": "prift-prob", "baseline": "dft",
                                "reference_methods": ["dft"], "sizes": [0, 64], "benchmarks": ["math500"],
                                "metric": "avg@2"}}
    path = tmp_path / "fig1c.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    png = tmp_path / "results" / "figures" / "fig1c.png"
    p = subprocess.run([sys.executable, "-m", "snakemake", str(png), "--cores", "2", "--configfile", str(path)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    _files_ok([png, png.with_suffix(".pdf")])
    res = tmp_path / "results"
    ref_run = json.loads((res / "sft" / "math@ref64" / "tiny" / "dft" / "final" / "prift_run.json").read_text())
    assert ref_run["n_examples"] == 64
    down = json.loads((res / "sft" / "math" / "tiny" / "prift-prob@ref=dft64" / "final" / "prift_run.json").read_text())
    n_train = len((res / "data" / "math" / "train.jsonl").read_text().splitlines())  # 96 less benchmark overlap
    assert down["scores_path"].endswith("scores/tiny+dft@64/tiny/math.safetensors") and down["n_examples"] == n_train
    assert (res / "scores" / "tiny" / "tiny" / "math.safetensors").exists()  # the pretrained point
    means = F.metric_means(S.figure_inputs(C.validate(yaml.safe_load(path.read_text())), "fig1c"), "avg@2")
    assert set(means) == {"prift-prob", "prift-prob@ref=dft64", "dft"} and all(0 <= v <= 100 for v in means.values())
