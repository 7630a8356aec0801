"""The paper's mechanism figures from the trainer's drift probes (prift.analysis): PNG + PDF, matplotlib.

  fig1a  Pearson / Spearman correlation and MAE between online and pretrained p_t over training (one line per run)
  fig1b  median online p_t per quintile of initial pretrained rank over training (one panel per run)
  fig3a  histogram of online token entropy after fine-tuning (one per run, the pretrained model's as reference)
  fig3c  KL(pretrained ‖ online) over training
  fig4   fig1a/fig1b for several runs in one figure (the paper: DFT solid, SFT dashed)
  fig5   online p_t of each target token of one held-out example (columns) at every probe (rows), one panel per run
These take {run label: list of probe records} and an output path stem (write <stem>.png and <stem>.pdf). From the
evaluation's files (config `figures:`, prift.sweeps.sweep_points):
  fig3b  average pass@k over benchmarks, k = 1…n (unbiased estimator, from the grades of n samples per problem)
  fig1c  downstream metric vs the number of examples the frozen reference was fine-tuned on (0 = pretrained)
  fig6a  metric vs EMA momentum ρ;   fig6b  metric vs PriFT-mass threshold τ
`render(cfg, name, paths, stem)` draws any figure of `figures:` from the files prift.sweeps.figure_inputs lists.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

from prift.io import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _dedupe(records: list[dict]) -> list[dict]:
    """One record per step (the last one wins: the final probe repeats the last step with entropies)."""
    by_step = {}
    for r in records:
        by_step[r["step"]] = r
    return [by_step[s] for s in sorted(by_step)]


def _save(fig, stem: str | Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
        out.append(path)
    plt.close(fig)
    return out


def fig1a(runs: dict[str, list[dict]], stem) -> list[Path]:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for label, recs in runs.items():
        recs = _dedupe(recs)
        steps = [r["step"] for r in recs]
        for ax, key in zip(axes, ("pearson", "spearman", "mae")):
            ax.plot(steps, [r[key] for r in recs], marker="o", ms=3, label=label)
    for ax, title in zip(axes, ("Pearson r", "Spearman ρ", "MAE")):
        ax.set_title(f"{title}: online vs pretrained $p_t$")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, stem)


def fig1b(runs: dict[str, list[dict]], stem) -> list[Path]:
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.4), squeeze=False)
    for ax, (label, recs) in zip(axes[0], runs.items()):
        recs = _dedupe(recs)
        steps = [r["step"] for r in recs]
        n_bins = len(recs[0]["median_p_by_bin"])
        for b in reversed(range(n_bins)):
            ax.plot(steps, [r["median_p_by_bin"][b] for r in recs], marker="o", ms=3,
                    label=f"bin {b + 1}" + (" (highest $p^{pt}$)" if b == n_bins - 1 else
                                            " (lowest)" if b == 0 else ""))
        ax.set_title(f"{label}\nmedian online $p_t$ by initial-rank quintile", fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, stem)


def fig3a(runs: dict[str, list[dict]], stem) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    finals = {label: [r for r in recs if "entropy" in r][-1] for label, recs in runs.items()
              if any("entropy" in r for r in recs)}
    top = max([max(r["entropy"] + r["ref_entropy"], default=0.0) for r in finals.values()] + [1e-6])
    edges = [top * i / 40 for i in range(41)]  # shared bins, so the histograms compare
    for i, (label, r) in enumerate(finals.items()):
        if i == 0:
            ax.hist(r["ref_entropy"], bins=edges, histtype="step", color="black", ls="--", label="pretrained")
        ax.hist(r["entropy"], bins=edges, histtype="step", label=label)
    ax.set_yscale("log")  # most tokens sit near zero entropy; the tail is where methods differ
    ax.set_xlabel("token entropy $H_t$ (nats)")
    ax.set_ylabel("tokens")
    ax.set_title("Entropy of held-out response tokens after fine-tuning")
    ax.legend(fontsize=8)
    return _save(fig, stem)


def _lines(series: dict[str, tuple[list, list]], stem, *, xlabel: str, ylabel: str, title: str, ms: float = 3,
           log2_x: bool = False) -> list[Path]:
    """One line with markers per label: series = {label: (xs, ys)}."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", ms=ms, label=label)
    if log2_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def fig3c(runs: dict[str, list[dict]], stem) -> list[Path]:
    series = {}
    for label, recs in runs.items():
        recs = [r for r in _dedupe(recs) if "kl_ref_online" in r]
        series[label] = ([r["step"] for r in recs], [r["kl_ref_online"] for r in recs])
    return _lines(series, stem, xlabel="training step", ylabel="KL(pretrained ‖ online), nats/token",
                  title="Drift from the pretrained distribution")


FIGURES = {"fig1a": fig1a, "fig1b": fig1b, "fig3a": fig3a, "fig3c": fig3c}
STYLES = ("-", "--", ":", "-.")


def fig4(runs: dict[str, list[dict]], stem) -> list[Path]:
    """Fig. 1a and 1b of several runs on shared axes: one line style per run (solid, dashed, ...)."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, recs) in enumerate(runs.items()):
        recs, ls = _dedupe(recs), STYLES[i % len(STYLES)]
        steps = [r["step"] for r in recs]
        for j, (ax, key) in enumerate(zip(axes[:3], ("pearson", "spearman", "mae"))):
            ax.plot(steps, [r[key] for r in recs], ls=ls, color=colors[j], label=label)
        n_bins = len(recs[0]["median_p_by_bin"])
        for b in range(n_bins):
            axes[3].plot(steps, [r["median_p_by_bin"][b] for r in recs], ls=ls, color=colors[b % len(colors)],
                         label=f"{label}, bin {b + 1}" if i == 0 or b == 0 else None)
    for ax, title in zip(axes, ("(a) Pearson r", "(a) Spearman ρ", "(a) MAE", "(b) median online $p_t$ by bin")):
        ax.set_title(title + (": online vs pretrained $p_t$" if "(a)" in title else ""), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[3].set_ylim(-0.02, 1.02)
    axes[3].legend(fontsize=6, ncol=2, title="bin 1 = lowest $p^{pt}$", title_fontsize=6)
    return _save(fig, stem)


def token_matrix(recs: list[dict], example: int = 0, max_tokens: int | None = None) -> tuple[list[int], list]:
    """(steps, rows of online p_t per target token) of one held-out example, one row per probe step."""
    recs = [r for r in _dedupe(recs) if len(r.get("token_p", [])) > example]
    if not recs:
        raise ValueError(f"no probe records hold per-token p_t of example {example} (analysis.tokens too small?)")
    return [r["step"] for r in recs], [r["token_p"][example][:max_tokens] for r in recs]


def fig5(runs: dict[str, list[dict]], stem, example: int = 0, max_tokens: int | None = 80) -> list[Path]:
    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 1.2 + 2.2 * len(runs)), squeeze=False, layout="constrained")
    im = None
    for ax, (label, recs) in zip(axes[:, 0], runs.items()):
        steps, rows = token_matrix(recs, example, max_tokens)
        im = ax.imshow(rows, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(steps)))
        ax.set_yticklabels(steps, fontsize=6 if len(steps) > 12 else 8)
        ax.set_ylabel("step")
        ax.set_title(f"{label}: target-token probability $p(y_t)$ of held-out example {example}", fontsize=10)
    axes[-1, 0].set_xlabel("target token position")
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.025, pad=0.01, label="online $p(y_t)$")
    fig.get_layout_engine().set(h_pad=0.1)
    return _save(fig, stem)


def fig3b(curves: dict[str, dict[int, float]], stem) -> list[Path]:
    """curves: {run label: {k: average pass@k in percent}}."""
    series = {label: (sorted(c), [c[k] for k in sorted(c)]) for label, c in curves.items()}
    return _lines(series, stem, xlabel="k (samples)", ylabel="average pass@k (%)",
                  title="Pass@k across sampling budgets", ms=2.5, log2_x=True)


def sweep(points: list[dict], stem, *, xlabel: str, ylabel: str, title: str,
          baseline: tuple[str, float] | None = None) -> list[Path]:
    """points: [{x, series, value}] in order, one line per series over evenly spaced x positions (the sweeps'
    values are uneven: ρ = 0.9, 0.99, …); `baseline` (label, value): a horizontal line."""
    xs = list(dict.fromkeys(p["x"] for p in points))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, series in enumerate(dict.fromkeys(p["series"] for p in points)):
        pts = [p for p in points if p["series"] == series]
        ax.plot([xs.index(p["x"]) for p in pts], [p["value"] for p in pts], ls=STYLES[i % len(STYLES)], marker="o",
                label=series)
    if baseline:
        ax.axhline(baseline[1], color="gray", ls=":", label=baseline[0])
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([f"{x:g}" for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, stem)


# ----------------------------------------------------------------------------------------------------------------------
# From the evaluation's files

def _run_of(path: Path) -> tuple[str, str]:
    """(method, benchmark) of a metrics or grades file (prift.paths.parse_eval)."""
    from prift.paths import parse_eval
    return parse_eval(path)[2:]


def pass_at_k_curves(grade_paths, ks=None) -> dict[str, dict[int, float]]:
    """{method: {k: pass@k in percent, averaged over the benchmarks}} from grades files (the Qwen-style verdict, as
    the tables), k = 1…n by default (n: the samples per problem; the same n in every file)."""
    from prift.data import read_jsonl
    from prift.benchmarks import correctness_matrix
    from prift.metrics import pass_at_k_curve
    per: dict[str, list[dict[int, float]]] = {}
    ns = set()
    for path in map(Path, grade_paths):
        _, mat = correctness_matrix(read_jsonl(path))
        n = min(len(r) for r in mat)
        ns.add(n)
        if len(ns) > 1:
            raise ValueError(f"{path}: {n} samples per problem, other files have {sorted(ns - {n})}")
        per.setdefault(_run_of(path)[0], []).append(pass_at_k_curve(mat, ks or range(1, n + 1)))
    return {m: {k: 100 * sum(c[k] for c in cs) / len(cs) for k in cs[0]} for m, cs in per.items()}


def metric_means(metric_paths, metric: str) -> dict[str, float]:
    """{method: unweighted mean over its benchmarks of `metric`} from metrics files."""
    import json
    vals: dict[str, list[float]] = {}
    for path in map(Path, metric_paths):
        recs = [r for r in json.loads(path.read_text()) if r["metric"] == metric]
        if len(recs) != 1:
            raise ValueError(f"{path}: {len(recs)} records of metric '{metric}' (expected 1)")
        vals.setdefault(_run_of(path)[0], []).append(recs[0]["value"])
    return {m: sum(v) / len(v) for m, v in vals.items()}


def _probe_runs(cfg: dict, dirs) -> dict[str, list[dict]]:
    from prift.analysis import read_probes
    from prift.paths import parse_run, probes_in
    runs = {}
    for d in map(Path, dirs):
        f = probes_in(d) if d.is_dir() else d
        if not f.exists():
            raise FileNotFoundError(f"{f}: no drift probes (was the run trained with analysis.every > 0?)")
        runs[cfg["methods"][parse_run(f)[2]]["label"]] = read_probes(f)
    return runs


SWEEP_AXES = {"fig1c": ("examples the frozen reference was fine-tuned on (0 = pretrained)",
                        "Downstream {metric} vs a partly fine-tuned reference"),
              "fig6a": ("EMA momentum ρ (0 = online, 1 = pretrained)", "{metric} with an EMA statistics source"),
              "fig6b": ("selection threshold τ", "PriFT-mass: {metric} vs threshold τ")}


def render(cfg: dict, name: str, paths, stem) -> list[Path]:
    """Draw figure `name` of the config's `figures:` from the files prift.sweeps.figure_inputs lists."""
    from prift import sweeps
    f = cfg["figures"][name]
    label = {m: cfg["methods"][m]["label"] for m in cfg["methods"]}
    if name == "fig3b":
        curves = pass_at_k_curves(paths)
        return fig3b({label[m]: curves[m] for m in f["methods"]}, stem)
    if name == "fig4":
        return fig4(_probe_runs(cfg, paths), stem)
    if name == "fig5":
        return fig5(_probe_runs(cfg, paths), stem, example=f.get("example", 0), max_tokens=f.get("max_tokens", 80))
    means = metric_means(paths, f["metric"])
    pts = [{**p, "value": means[p["method"]]} for p in sweeps.sweep_points(cfg, name)]
    n = len(f["benchmarks"])
    metric = f"{f['metric']} (%, " + (f"mean of {n} benchmarks)" if n > 1 else f"{f['benchmarks'][0]})")
    xlabel, title = SWEEP_AXES[name]
    base = (f"{label[f['baseline']]} (online)", means[f["baseline"]]) if f.get("baseline") else None
    return sweep(pts, stem, xlabel=xlabel, ylabel=metric, title=title.format(metric=f["metric"]), baseline=base)
