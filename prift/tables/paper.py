"""The paper side by side: its transcribed values (config/paper/table{N}.csv), ours | paper | Δ with our 95%
interval, and the paper's own inconsistencies (printed averages its row does not give, misplaced marks, Δ).
"""
from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from prift.tables.cells import (AVERAGE, DELTA, MISSING, PAPER_KEYS, TOL, Cell, Key, _index, _normalise, _rank_marks,
                                _shown, evaluate, layout)
from prift.io import write_text
from prift.tables.rendering import _fmt, latex_escape
from prift.tables.specs import SPECS, Group, TableSpec


PAPER_DIR = Path(__file__).resolve().parents[2] / "config" / "paper"

# Observations on the printed paper that cannot be derived from its numbers (layout, labels, captions).
PAPER_NOTES: dict[str, list[str]] = {
    "table2": ["Original is printed as 31.40 here but 31.38 in Table 9 (same pretrained LLaMA-2-7B, same three "
               "benchmarks); the fine-tuned rows use a low-data regime (footnote 4) and are keyed variant='lowdata'."],
    "table3": ["EAFT is printed as 'EAFt'. Qwen3-8B-Base IDFT/TALR Avg@16 inputs carry one decimal only (69.70, "
               "24.20, ...); their printed averages differ from the mean of the printed inputs by exactly 0.01."],
    "table5": ["The caption says 'relative improvement' but every Δ equals the absolute point difference to the "
               "pre-RL average of Tables 3/10; SFT's Δ is printed with one decimal (+14.4, +11.3, +19.5, +15.2)."],
    "table8": ["The printed 'Model' column reads Qwen2.5-Math-1.5B, Qwen2.5-Math-7B, Qwen2.5-1.5B, Qwen2.5-Math-1.5B; "
               "per the text (App. D.1) and Tables 7/10 the fine-tuned models are Qwen2.5-Math-1.5B (rows 1-2) and "
               "Qwen2.5-1.5B (rows 3-4), with the printed entries being the reweighting models."],
    "table10": ["The Qwen2.5-Math (1.5B) PriFT-mass row is printed outside its model block (layout)."],
    "table11": ["EAFT is printed as 'EAFD'."],
}


def load_paper(name_or_path: str | Path) -> pd.DataFrame:
    """A paper transcription (config/paper/table{N}.csv, '#' lines skipped) as a long frame with `printed` strings."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PAPER_DIR / f"{name_or_path}.csv"
    frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    missing = [k for k in PAPER_KEYS if k not in frame]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    frame["printed"] = frame["value"]
    return _normalise(frame, PAPER_KEYS)


def compare(spec: TableSpec, ours_frame: pd.DataFrame | None, paper_frame: pd.DataFrame | None) -> pd.DataFrame:
    """One row per displayed cell: ours (+95% CI) | paper (as printed) | delta = ours - paper, paper_outside_ci."""
    ours_idx, paper_idx = _index(ours_frame), _index(paper_frame)
    _, _, cells = layout(spec)
    out = []
    for c in cells:
        v, lo, hi = evaluate(c, ours_idx)
        p = evaluate(c, paper_idx, printed=True)[0]
        outside = None if math.isnan(p) or math.isnan(lo) else bool(p < lo or p > hi)
        out.append({"model": c.row[0], "row": c.row[1], "column": c.col[0], "metric": c.col[1],
                    "backbone": c.backbone, "method": c.method, "variant": c.variant,
                    "benchmark": c.printed_benchmark, "metric_key": (DELTA if c.is_gain else "") + c.metric,
                    "ours": v, "ci_low": lo, "ci_high": hi, "paper": p, "delta": v - p, "paper_outside_ci": outside})
    return pd.DataFrame(out)


def comparison_spec(paper: TableSpec, ours: TableSpec | None) -> TableSpec:
    """The paper's layout (its models, rows, columns, metrics), plus the model groups of our table whose backbone the
    paper does not show (e.g. the demo's tiny model): those rows are ours only, their paper cells missing."""
    if ours is None or ours is paper or paper.cells is not None:
        return paper
    shown = {g.backbone for g in paper.models}
    extra = tuple(Group(g.label, g.backbone, ours.group_rows(g)) for g in ours.models if g.backbone not in shown)
    return dataclasses.replace(paper, models=paper.models + extra) if extra else paper


def paper_frame_for(spec: TableSpec, path: Path | str) -> pd.DataFrame:
    """A paper transcription; for a table with gains (Table 5) also the base-variant rows of the other
    transcriptions beside it (the pre-RL averages of Tables 3/10), so that its printed Δ can be checked."""
    path = Path(path)
    own = load_paper(path)
    if spec.gain_from is None:
        return own
    others = [load_paper(q) for q in sorted(path.parent.glob("*.csv")) if q.resolve() != path.resolve()]
    base = [f[f.variant == spec.gain_from] for f in others]
    keys = ["backbone", "method", "variant", "benchmark", "metric"]
    return pd.concat([own, *base], ignore_index=True).drop_duplicates(subset=keys, keep="first")


def side_by_side(spec: TableSpec, ours: pd.DataFrame | None, paper: pd.DataFrame | None
                 ) -> tuple[pd.DataFrame, list[str]]:
    """compare() with a `footnotes` column (numbers of the notes about that cell) and the numbered notes: the paper's
    own inconsistencies (per cell), then PAPER_NOTES (whole table), then a note when no cell has both numbers."""
    table = compare(spec, ours, paper)
    findings = paper_findings(spec, paper) if paper is not None and len(paper) else []
    notes = [text for _, text in findings] + list(PAPER_NOTES.get(spec.name, []))
    refs: dict[tuple, list[int]] = {}
    for i, (c, _) in enumerate(findings, 1):
        refs.setdefault((c.row, c.col), []).append(i)
    table["footnotes"] = [",".join(map(str, refs.get(((m, r), (col, met)), [])))
                          for m, r, col, met in zip(table.model, table.row, table.column, table.metric)]
    if len(table) and not (table.ours.notna() & table.paper.notna()).any():
        ours_only = sorted({m for m, v in zip(table.model, table.ours) if not math.isnan(v)})
        notes.append("No cell has both our value and the paper's: " + (
            f"our runs ({', '.join(ours_only)}) are not models of the paper's table, so they are listed beside it "
            "without a Δ." if ours_only else "none of the paper's runs has results yet."))
    return table, notes


def comparison_csv_text(table: pd.DataFrame) -> str:
    shown = table.copy()
    for k in ("ours", "ci_low", "ci_high", "paper"):
        shown[k] = [_fmt(v) for v in table[k]]
    shown["delta"] = [_fmt(v, signed=True) for v in table["delta"]]
    shown["paper_outside_ci"] = ["" if v is None else str(v) for v in table["paper_outside_ci"]]
    buf = io.StringIO()
    shown.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def comparison_latex_text(spec: TableSpec, table: pd.DataFrame, notes: list[str]) -> str:
    """A booktabs longtable, one line per cell: ours [95% CI] | paper | Δ; † where the paper's value lies outside
    our interval; superscripts point to the footnotes printed below it."""
    head = (r"Model & Row & Column & Metric & Ours & 95\% CI & Paper & $\Delta$ \\")
    lines = [r"\begin{longtable}{llllrcrr}",
             rf"\caption{{{latex_escape(spec.caption)} Ours vs.\ the paper.}}\label{{tab:{spec.name}-vs-paper}}\\",
             r"\toprule", head, r"\midrule", r"\endfirsthead", r"\toprule", head, r"\midrule", r"\endhead",
             r"\bottomrule", r"\endlastfoot"]
    prev = (None, None)
    for r in table.itertuples():
        model = latex_escape(r.model) if r.model != prev[0] else ""
        row = latex_escape(r.row) if (r.model, r.row) != prev else ""
        if prev[0] is not None and r.model != prev[0]:
            lines.append(r"\midrule")
        prev = (r.model, r.row)
        ci = MISSING if math.isnan(r.ci_low) else f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
        paper = _fmt(r.paper) + (r"$^\dagger$" if r.paper_outside_ci else "")
        if r.footnotes:
            paper += rf"\textsuperscript{{{r.footnotes}}}"
        cells = [model, row, latex_escape(r.column), latex_escape(r.metric), _fmt(r.ours), ci, paper,
                 _fmt(r.delta, signed=True)]
        lines.append(" & ".join(c.replace(MISSING, "--") for c in cells) + r" \\")
    lines.append(r"\end{longtable}")
    lines.append(r"{\footnotesize $^\dagger$ the paper's value lies outside our 95\% interval. "
                 r"$\Delta$ = ours $-$ paper.\par")
    if notes:
        lines.append(r"\begin{enumerate}")
        lines += [rf"\item {latex_escape(n)}" for n in notes]
        lines.append(r"\end{enumerate}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_comparison(spec: TableSpec, ours: pd.DataFrame | None, paper: pd.DataFrame | None,
                      out_csv: Path | str, out_tex: Path | str | None = None) -> pd.DataFrame:
    """The side by side as CSV (2 decimals, '—' missing; one line per cell), LaTeX (when out_tex is given) and the
    numbered footnotes as <csv stem>.footnotes.md (the CSV's `footnotes` column holds their numbers)."""
    table, notes = side_by_side(spec, ours, paper)
    out_csv = Path(out_csv)
    write_text(out_csv, comparison_csv_text(table))
    if out_tex is not None:
        write_text(out_tex, comparison_latex_text(spec, table, notes))
    write_text(out_csv.with_name(out_csv.stem + ".footnotes.md"),
                      "".join(f"{i}. {n}\n" for i, n in enumerate(notes, 1)) or "none\n")
    return table


def _decimals(printed: str | None) -> int:
    if not printed or "." not in printed:
        return 2
    return len(printed.split(".", 1)[1])


def paper_inconsistencies(spec: TableSpec, paper_frame: pd.DataFrame, printed_averages: pd.DataFrame | None = None,
                          mark_exclude: Iterable[str] | None = None) -> list[str]:
    """Footnotes on the printed table: averages that are not the mean of their row (±0.01), gains that are not the
    difference of the printed values, and bold/underline marks that do not sit on the best/second-best value.

    printed_averages: rows with benchmark 'average' (default: those inside paper_frame). Marks are read from a
    `mark` column ('b'/'u'/''), ranked the paper's way (spec.paper_mark_exclude unless mark_exclude is given).
    """
    return [text for _, text in paper_findings(spec, paper_frame, printed_averages, mark_exclude)]


def paper_findings(spec: TableSpec, paper_frame: pd.DataFrame, printed_averages: pd.DataFrame | None = None,
                   mark_exclude: Iterable[str] | None = None) -> list[tuple[Cell, str]]:
    """paper_inconsistencies() with the cell each finding is about."""
    frame = _normalise(paper_frame, PAPER_KEYS)
    if printed_averages is not None:
        frame = pd.concat([frame[frame.benchmark != AVERAGE], _normalise(printed_averages, PAPER_KEYS)])
    if "printed" not in frame:
        frame["printed"] = ""
    idx = _index(frame)
    mark_of = dict(zip(zip(frame.backbone, frame.method, frame.variant, frame.benchmark, frame.metric), frame["mark"]))
    printed_of = dict(zip(zip(frame.backbone, frame.method, frame.variant, frame.benchmark, frame.metric),
                          frame["printed"].fillna("").astype(str)))
    _, _, cells = layout(spec)
    notes = []

    def where(c: Cell) -> str:
        return f"{spec.name} {c.row[0]} / {c.row[1]} / {c.col[0]} {c.col[1]}"

    def key_of(c: Cell, variant: str | None = None, metric: str | None = None):
        for m in c.method.split("|"):
            k = (c.backbone, m, c.variant if variant is None else variant, c.printed_benchmark,
                 metric or c.metric)
            if k in idx:
                return k
        return None

    for c in cells:
        if c.is_gain:
            kd, kv, kb = key_of(c, metric=DELTA + c.metric), key_of(c), key_of(c, variant=c.base_variant)
            if kd and kv and kb:
                diff, printed = idx[kv][0] - idx[kb][0], idx[kd][0]
                dec = _decimals(printed_of.get(kd))
                if abs(diff - printed) > 0.5 * 10 ** -dec + TOL + 1e-9:
                    notes.append((c, f"{where(c)}: printed Δ {printed:+.{dec}f} but the printed values "
                                 f"give {idx[kv][0]:.2f} - {idx[kb][0]:.2f} = {diff:+.2f}"))
        elif c.is_mean:
            k = key_of(c)
            if k is None:
                continue
            computed = evaluate(c, {kk: vv for kk, vv in idx.items() if kk[3] != AVERAGE})[0]
            if not math.isnan(computed) and round(abs(computed - idx[k][0]), 6) > TOL:
                notes.append((c, f"{where(c)}: printed average {idx[k][0]:.2f} but the mean of the printed row is "
                             f"{computed:.3f} (off by {idx[k][0] - computed:+.2f})"))
    # marks
    exclude = set(spec.paper_mark_exclude if mark_exclude is None else mark_exclude)
    uses_b = any(mark_of.get(key_of(c)) == "b" for c in cells if key_of(c))
    uses_u = any(mark_of.get(key_of(c)) == "u" for c in cells if key_of(c))
    by_group: dict[tuple[str, tuple[str, str]], list[Cell]] = {}
    for c in cells:
        if not c.is_gain and c.method.split("|")[0] not in exclude and key_of(c):
            by_group.setdefault((c.row[0], c.col), []).append(c)
    for (_, col), group in by_group.items():
        values = [idx[key_of(c)][0] for c in group]
        ranks = _rank_marks(values, second=True)
        for c, v, rank in zip(group, values, ranks):
            printed = mark_of.get(key_of(c), "")
            shown = _fmt(v)
            if printed == "b" and rank != "b":
                notes.append((c, f"{where(c)}: {shown} is bold but the best is {_fmt(max(values))}"))
            elif printed == "u" and rank != "u":
                best = sorted({_shown(x) for x in values}, reverse=True)
                notes.append((c, f"{where(c)}: {shown} is underlined but the second best is "
                             f"{_fmt(best[1]) if len(best) > 1 else 'none'}"
                             + (" (it is the best)" if rank == "b" else "")))
            elif rank == "b" and printed != "b" and uses_b and len(group) > 1:
                notes.append((c, f"{where(c)}: {shown} is the best but not bold"))
            elif rank == "u" and printed != "u" and uses_u and spec.mark_second:
                notes.append((c, f"{where(c)}: {shown} is the second best but not underlined"))
    return notes


def paper_cross_check(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The same (backbone, method, variant, benchmark, metric) printed with different values in two tables."""
    seen: dict[Key, tuple[str, float]] = {}
    notes = []
    for name, frame in frames.items():
        frame = _normalise(frame, PAPER_KEYS)
        for k, v in zip(zip(frame.backbone, frame.method, frame.variant, frame.benchmark, frame.metric), frame.value):
            if k in seen and seen[k][0] != name and abs(seen[k][1] - v) > 1e-9:
                notes.append(f"{'/'.join(x for x in k if x)}: {seen[k][1]:.2f} in {seen[k][0]} but {v:.2f} in {name}")
            seen.setdefault(k, (name, v))
    return notes


def load_all_paper(names: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    names = list(names) if names is not None else [n for n in SPECS if (PAPER_DIR / f"{n}.csv").exists()]
    return {n: load_paper(n) for n in names}
