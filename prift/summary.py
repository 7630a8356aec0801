"""`results/summary.md`: what a run's paired comparisons say, in plain sentences, written from the files (never typed).

For each table with comparisons (results/tables/<table>_paired.csv, prift.tables.paired): the differences over the
average of the benchmarks that survive Holm's correction within the table, those that do not, and per benchmark how
many comparisons are significant, with the paper's own difference beside ours where it prints one.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

AVERAGE = "average"


def _name(labels: Mapping[str, str], key: str) -> str:
    return labels.get(key, key)


def _sentence(r, labels) -> str:
    paper = "" if pd.isna(r.paper_delta) else f"; the paper: {r.paper_delta:+.2f}"
    return (f"{_name(labels, r.method)} vs {_name(labels, r.baseline)} ({_name(labels, r.backbone)}, {r.metric}): "
            f"{r.delta:+.2f} points [{r.ci_low:+.2f}, {r.ci_high:+.2f}], p = {r.p:.3g}, Holm-adjusted "
            f"{r.p_holm:.3g}{paper}")


def table_summary(name: str, caption: str, frame: pd.DataFrame, labels: Mapping[str, str]) -> list[str]:
    lines = [f"## {name}: {caption}", ""]
    if frame.empty:
        return lines + ["No paired comparison (no PriFT row and no `paired:` entry in the config).", ""]
    avg = frame[frame.benchmark == AVERAGE]
    sig, not_sig = avg[avg.significant], avg[~avg.significant]
    n = len(frame)
    seeds = int(frame.n_seeds.max()) if "n_seeds" in frame else 1
    over = (f" Each method ran {seeds} times (seeds): its value is the mean over seeds, the interval resamples the "
            f"seeds and the problems, and a difference is significant only where the interval also excludes 0."
            if seeds > 1 else "")
    lines.append(f"{n} comparisons (each method against each baseline, per benchmark and on the average, per metric); "
                 f"Holm's correction over all {n}; significant = adjusted p < 0.05.{over}")
    lines.append("")
    if len(sig):
        lines.append("Significant on the average over the benchmarks:")
        lines += [f"- {_sentence(r, labels)}." for r in sig.itertuples()]
    else:
        lines.append("No difference on the average over the benchmarks is significant.")
    if len(not_sig):
        lines += ["", "Not significant on the average (the interval or the correction does not exclude no difference):"]
        lines += [f"- {_sentence(r, labels)}." for r in not_sig.itertuples()]
    per = frame[frame.benchmark != AVERAGE]
    if len(per):
        counts = per.groupby("benchmark", sort=False).significant.agg(["sum", "count"])
        lines += ["", "Per benchmark: " + "; ".join(f"{_name(labels, b)} {int(c['sum'])} of {int(c['count'])} "
                                                   f"significant" for b, c in counts.iterrows()) + "."]
    return lines + [""]


def summary_text(tables: Mapping[str, tuple[str, pd.DataFrame]], labels: Mapping[str, str]) -> str:
    """The whole summary: `tables` = {table: (caption, paired frame)} in the order to show them."""
    lines = ["# What this run shows", "",
             "Differences are paired: both methods on the same problems, intervals from a bootstrap that resamples the "
             "problems for both at once, p-values from a sign-flip permutation test (prift.metrics.paired_difference).",
             ""]
    for name, (caption, frame) in tables.items():
        lines += table_summary(name, caption, frame, labels)
    return "\n".join(lines)
