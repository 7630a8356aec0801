"""Paired comparisons of a table's methods: each method against each baseline on the same problems.

One row per (backbone, method, baseline, benchmark or "average", metric): the two methods' values, Δ = method −
baseline in points, a 95% paired bootstrap interval (problems resampled jointly for both methods; for the average over
benchmarks, within each benchmark), a sign-flip permutation p-value (prift.metrics.paired_difference), Holm's
adjusted p-value over all rows of the table (the family: every comparison the table makes), whether it survives at
5%, and the paper's own difference for the same cells where the paper prints both (config/paper/<table>.csv).

Per-problem scores come from the grades files (prift.metrics.per_problem_scores): Avg@k from each problem's sample
mean, Pass@k from the unbiased estimator, accuracy / pass@1 from the single verdict. Problems are matched by id.
Runs repeated over seeds (prift.seeds: `m@seed=s` beside `m`) are one comparison over all seeds: seed i of the
method against seed i of the baseline (a baseline of one seed, e.g. `original`, against every seed), the bootstrap
resampling seeds and problems (prift.metrics.paired_difference); `n_seeds` says how many. The permutation p-value
holds the trained models fixed while the interval also carries the seed-to-seed spread, so with several seeds a
difference is `significant` only where Holm's adjusted p < 5% and the interval excludes 0.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from prift import metrics as M
from prift.io import write_text
from prift.tables.rendering import latex_escape

AVERAGE = "average"
ALPHA = 0.05
COLUMNS = ("backbone", "method", "baseline", "benchmark", "metric", "value", "baseline_value", "delta", "ci_low",
           "ci_high", "p", "p_holm", "significant", "paper_delta", "n_problems", "n_seeds")

# (backbone, method, bench) → (problem ids, correctness matrix) of each seed's run, the first seed's first
Cells = Mapping[tuple[str, str, str], Sequence[tuple[Sequence[str], np.ndarray]]]


def default_pairs(methods: Sequence[str], scores: Mapping[str, float]) -> list[tuple[str, str]]:
    """(method, baseline) pairs of one backbone's rows by default: every PriFT row against SFT, DFT and the strongest
    other baseline (the highest `scores` among the rest, Original and PriFT excluded). RL rows (`<init>+rl`) are
    compared with RL rows."""
    base = {m: m.split("+", 1)[0] for m in methods}
    prift = [m for m in methods if base[m].startswith("prift")]
    named = [m for m in methods if base[m] in ("sft", "dft")]
    others = [m for m in methods if m not in prift and m not in named and base[m] != "original"]
    strongest = max(others, key=lambda m: scores.get(m, float("-inf")), default=None)
    baselines = named + ([strongest] if strongest is not None and strongest in scores else [])
    return [(m, b) for m in prift for b in baselines]


def _aligned(cells: Cells, key_a, key_b, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """[seeds, problems] scores of both methods, problems in the order of A's first seed, seed i against seed i."""
    runs_a, runs_b = cells[key_a], cells[key_b]
    if len(runs_a) != len(runs_b) and 1 not in (len(runs_a), len(runs_b)):
        raise ValueError(f"{key_a} has {len(runs_a)} seeds, {key_b} {len(runs_b)}: a paired comparison over seeds "
                         f"needs the same seeds (or one run of the baseline)")
    ids = runs_a[0][0]

    def scores(runs, key):
        out = []
        for ids_r, m in runs:
            if sorted(ids_r) != sorted(ids):
                raise ValueError(f"{key_a} and {key} were graded on different problems ({len(ids)} vs "
                                 f"{len(ids_r)}): a paired comparison needs the same ones")
            where = {i: r for r, i in enumerate(ids_r)}
            out.append(M.per_problem_scores(np.asarray(m)[[where[i] for i in ids]], metric))
        return np.stack(out)
    a, b = scores(runs_a, key_a), scores(runs_b, key_b)
    n = max(len(a), len(b))
    return np.repeat(a, n // len(a), axis=0), np.repeat(b, n // len(b), axis=0)


def paired_frame(cells: Cells, pairs: Mapping[str, Sequence[tuple[str, str]]], benchmarks: Sequence[str],
                 metrics: Sequence[str], *, paper: pd.DataFrame | None = None, variant_of=None, n_boot: int = 2000,
                 n_perm: int = 20000, seed: int = 0) -> pd.DataFrame:
    """The comparisons of one table (module doc). `pairs`: {backbone: [(method, baseline), ...]}; `paper`: a long
    frame (backbone, method, variant, benchmark, metric, value) of the paper's values; `variant_of(method)` →
    (paper method key, variant) for the lookup (RL runs `<init>+rl` are (init, "rl"))."""
    rows = []
    for bb, bb_pairs in pairs.items():
        for method, baseline in bb_pairs:
            for metric in metrics:
                per = {bench: _aligned(cells, (bb, method, bench), (bb, baseline, bench), metric)
                       for bench in benchmarks}
                for bench in [*benchmarks, AVERAGE]:
                    use = benchmarks if bench == AVERAGE else [bench]
                    a, b = [per[x][0] for x in use], [per[x][1] for x in use]
                    r = M.paired_difference(a, b, n_boot=n_boot, n_perm=n_perm, seed=seed)
                    rows.append({"backbone": bb, "method": method, "baseline": baseline, "benchmark": bench,
                                 "metric": metric, "value": 100 * float(np.mean([x.mean() for x in a])),
                                 "baseline_value": 100 * float(np.mean([x.mean() for x in b])),
                                 "delta": r["delta"], "ci_low": r["ci"][0], "ci_high": r["ci"][1], "p": r["p"],
                                 "paper_delta": _paper_delta(paper, variant_of, bb, method, baseline, bench, metric),
                                 "n_problems": r["n_problems"], "n_seeds": r["n_seeds"]})
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_holm", "significant")])
    frame["p_holm"] = M.holm(frame["p"].tolist()) if len(frame) else []
    # several seeds: the permutation test holds the trained models fixed, the interval also resamples the seeds; a
    # difference is called significant only where both say so
    excludes_zero = (frame["ci_low"] > 0) | (frame["ci_high"] < 0)
    frame["significant"] = (frame["p_holm"] < ALPHA) & (excludes_zero | (frame["n_seeds"] == 1))
    return frame[list(COLUMNS)]


def _paper_delta(paper, variant_of, bb, method, baseline, bench, metric) -> float:
    if paper is None or paper.empty:
        return float("nan")

    def value(m):
        key, variant = variant_of(m) if variant_of else (m, "")
        hit = paper[(paper.backbone == bb) & (paper.method == key) & (paper.variant.fillna("") == variant)
                    & (paper.benchmark == bench) & (paper.metric == metric)]
        return float(hit.value.iloc[0]) if len(hit) else float("nan")
    return value(method) - value(baseline)


def to_csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    out = frame.copy()
    for c in ("value", "baseline_value", "delta", "ci_low", "ci_high", "paper_delta"):
        out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    for c in ("p", "p_holm"):
        out[c] = out[c].map(lambda v: f"{v:.4g}")
    out.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def to_latex_text(frame: pd.DataFrame, caption: str, labels: Mapping[str, str] | None = None) -> str:
    """One row per (backbone, method vs baseline), one column per benchmark and the average, per metric: Δ with its
    interval; bold where it survives Holm's correction at 5%."""
    labels = labels or {}
    if frame.empty:
        return (f"% {latex_escape(caption)}: no comparison (the table has no PriFT row and no `paired:` entry)\n")
    benches = list(dict.fromkeys(frame.benchmark))
    out = []
    for metric, part in frame.groupby("metric", sort=False):
        cols = "ll" + "c" * len(benches)
        head = " & ".join(["Model", "Comparison"] + [latex_escape(labels.get(b, b)) for b in benches])
        lines = ["\\begin{table}[t]\\centering\\small", f"\\caption{{{latex_escape(caption)} ({metric}): "
                 f"method $-$ baseline in points, 95\\% paired bootstrap interval; bold: significant after Holm's "
                 f"correction over the table's {len(frame)} comparisons}}", f"\\begin{{tabular}}{{{cols}}}",
                 "\\toprule", head + " \\\\", "\\midrule"]
        for (bb, m, base), grp in part.groupby(["backbone", "method", "baseline"], sort=False):
            cells = []
            for b in benches:
                r = grp[grp.benchmark == b].iloc[0]
                txt = f"{r.delta:+.2f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]"
                cells.append(f"\\textbf{{{txt}}}" if r.significant else txt)
            lines.append(" & ".join([latex_escape(labels.get(bb, bb)),
                                     f"{latex_escape(labels.get(m, m))} vs {latex_escape(labels.get(base, base))}"]
                                    + cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def write(frame: pd.DataFrame, out_csv: Path | str, out_tex: Path | str, caption: str,
          labels: Mapping[str, str] | None = None) -> None:
    write_text(out_csv, to_csv_text(frame))
    write_text(out_tex, to_latex_text(frame, caption, labels))


def paired_table(cfg: dict, table: str, grades: Sequence[Path], paper: Path | str | None, out_csv: Path | str,
                 out_tex: Path | str) -> pd.DataFrame:
    """Table `table` of the (validated) config, paired: its methods against its baselines (`tables.<t>.paired`, else
    `default_pairs` by the first metric's average) on the grades of its runs, written as CSV and LaTeX; the paper's
    stated differences beside ours where `paper` (its transcription, config/paper/<table>.csv) is given."""
    from prift import benchmarks as B, config as C
    from prift.data import read_jsonl
    from prift.paths import parse_eval
    from prift.seeds import seed_order, split_seed
    from prift.tables.paper import load_paper
    spec = cfg["tables"][table]
    metrics = list(spec["metrics"])
    by_seed = {}
    for path in map(Path, grades):
        _, bb, m, bench = parse_eval(path)
        base, s = split_seed(m)
        by_seed.setdefault((bb, base, bench), {})[s] = B.correctness(cfg, bench, read_jsonl(path), metrics[0])
    cells = {key: [runs[s] for s in sorted(runs, key=seed_order)]
             for key, runs in by_seed.items()}
    variant = cfg["domains"][spec["domain"]].get("variant", "")

    def variant_of(m):
        return (C.rl_init(m), C.RL_VARIANT) if C.rl_init(m) else (m, "" if m == C.ORIGINAL else variant)
    chosen = spec.get("paired") or {}
    pairs = {}
    for bb in spec["backbones"]:
        methods = C.table_methods(spec, bb)
        if chosen:
            pairs[bb] = [(m, b) for m in chosen.get("methods", methods) for b in chosen.get("baselines", [])
                         if m in methods and b in methods and m != b]
        else:
            score = {m: float(np.mean([M.per_problem_scores(mat, metrics[0]).mean()
                                       for x in spec["benchmarks"] for _, mat in cells[(bb, m, x)]])) for m in methods}
            pairs[bb] = default_pairs(methods, score)
    frame = paired_frame(cells, pairs, spec["benchmarks"], metrics, paper=load_paper(paper) if paper else None,
                         variant_of=variant_of, n_boot=cfg["evaluation"].get("n_boot", 1000), seed=cfg["seed"])
    write(frame, out_csv, out_tex, spec.get("caption", table), C.labels(cfg) | {AVERAGE: "Average"})
    return frame
