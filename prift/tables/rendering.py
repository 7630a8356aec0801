"""Writing tables: CSV (2 decimals, '—' missing) and LaTeX (pandas Styler, booktabs), atomically."""
from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from prift.tables.cells import MISSING, _gain_label, marks, seed_tables
from prift.io import write_text
from prift.tables.specs import SPECS, TableSpec


def _fmt(v: float, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _flat_columns(spec: TableSpec, cols) -> list[str]:
    out = []
    for blabel, mlabel in cols:
        if spec.cells is None and not spec.show_benchmarks:
            out.append(mlabel)
        elif len(spec.metrics) == 1 and spec.gain_from is None:
            out.append(blabel)
        else:
            out.append(f"{blabel} {mlabel}")
    return out


SD = " sd"   # the CSV column of a value column's seed-to-seed standard deviation (several seeds)


def to_csv_text(spec: TableSpec, table: pd.DataFrame, spread: pd.DataFrame | None = None) -> str:
    """2 decimals, '—' missing; with `spread` (several seeds: prift.tables.cells.seed_tables) each column is
    followed by its "<column> sd"."""
    gain_cols = {c for c in table.columns if c[1].startswith("Δ ")}
    flat = {}
    for name, col in zip(_flat_columns(spec, table.columns), table.columns):
        flat[name] = [_fmt(v, signed=col in gain_cols) for v in table[col]]
        if spread is not None:
            flat[name + SD] = [_fmt(v) for v in spread[col]]
    flat = pd.DataFrame(flat)
    flat.insert(0, spec.row_header[1], [r[1] for r in table.index])
    flat.insert(0, spec.row_header[0], [r[0] for r in table.index])
    buf = io.StringIO()
    flat.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials outside $...$ (labels may carry inline math, e.g. '$p_t$ rw.')."""
    parts = re.split(r"(\$[^$]*\$)", str(text))
    return "".join(p if p.startswith("$") and p.endswith("$") and len(p) > 1
                   else "".join(_LATEX_SPECIAL.get(ch, ch) for ch in p) for p in parts)


def to_latex_text(spec: TableSpec, table: pd.DataFrame, mark_exclude: Iterable[str] | None = None,
                  spread: pd.DataFrame | None = None) -> str:
    """booktabs, best bold, second underlined; with `spread` (several seeds) each mean is followed by a small ± its
    seed-to-seed standard deviation."""
    mk = marks(spec, table, mark_exclude)
    shown_cols = [c for c in table.columns if not c[1].startswith("Δ ")]
    text = pd.DataFrame(index=table.index, columns=pd.MultiIndex.from_tuples(shown_cols), dtype=object)
    for c in shown_cols:
        gain = (c[0], _gain_label(c[1]))
        for r in table.index:
            s = _fmt(table.loc[r, c])
            if spread is not None and s != MISSING and not math.isnan(spread.loc[r, c]):
                s += f"{{\\scriptsize$\\pm${_fmt(spread.loc[r, c])}}}"
            if gain in table.columns and s != MISSING:
                s += f" ({_fmt(table.loc[r, gain], signed=True)})"
            text.loc[r, c] = s
    styles = mk[shown_cols].map(lambda m: {"b": "textbf: --rwrap;", "u": "underline: --rwrap;"}.get(m, ""))
    relabel = {c: (latex_escape(c[0]), latex_escape(f"{c[1]} (Δ)" if (c[0], _gain_label(c[1])) in table.columns
                                                   else c[1])) for c in shown_cols}
    text.columns = pd.MultiIndex.from_tuples([relabel[c] for c in shown_cols])
    text.index = pd.MultiIndex.from_tuples([(latex_escape(a), latex_escape(b)) for a, b in table.index],
                                           names=[latex_escape(n) for n in spec.row_header])
    styles.columns, styles.index = text.columns, text.index
    hide_bench = spec.cells is None and not spec.show_benchmarks
    hide_metric = len(spec.metrics) == 1
    if spec.transpose:
        text, styles = text.T, styles.T
    styler = text.style.apply(lambda _: styles, axis=None)
    col_axis, row_axis = ("index", "columns") if spec.transpose else ("columns", "index")
    if hide_bench and not hide_metric:
        styler = styler.hide(axis=col_axis, level=0)
    elif hide_metric and not hide_bench:
        styler = styler.hide(axis=col_axis, level=1)
    if spec.transpose and len(spec.models) == 1:
        styler = styler.hide(axis=row_axis, level=0)
    n_lead = text.index.nlevels - (1 if (spec.transpose and hide_bench != hide_metric) else 0)
    if not spec.transpose:
        styler = styler.hide(names=True, axis="index")
    tex = styler.to_latex(
        column_format="l" * n_lead + "c" * text.shape[1], position="t", position_float="centering", hrules=True,
        clines="skip-last;data" if text.index.nlevels > 1 and not spec.transpose else None,
        label=f"tab:{spec.name}", caption=latex_escape(spec.caption), multirow_align="c", multicol_align="c",
        environment="table")
    return _tidy_latex(tex, [] if spec.transpose else [latex_escape(n) for n in spec.row_header], n_lead)


def _tidy_latex(tex: str, row_header: list[str], n_lead: int) -> str:
    """Group separators as \\midrule (none before \\bottomrule); row-header names in the last header row."""
    lines = tex.split("\n")
    out = []
    for line in lines:
        if re.fullmatch(r"\\cline\{1-\d+\}", line.strip()):
            line = "\\midrule"
        if line.strip() == "\\bottomrule" and out and out[-1] == "\\midrule":
            out.pop()
        out.append(line)
    if row_header:
        first_mid = out.index("\\midrule")
        cells = out[first_mid - 1].split(" & ")
        if len(cells) > n_lead and all(not c.strip() for c in cells[:n_lead]):
            out[first_mid - 1] = " & ".join(row_header[-n_lead:] + cells[n_lead:])
    return "\n".join(out)


def render(spec: TableSpec, frame: pd.DataFrame | None, out_csv: Path | str, out_tex: Path | str,
           mark_exclude: Iterable[str] | None = None) -> pd.DataFrame:
    """Write the table as CSV (2 decimals, '—' missing) and LaTeX (booktabs, best bold, second underlined); with
    several seeds, the means over seeds and their seed-to-seed standard deviations."""
    table, spread = seed_tables(spec, frame)
    write_text(out_csv, to_csv_text(spec, table, spread))
    write_text(out_tex, to_latex_text(spec, table, mark_exclude, spread))
    return table


def render_all(frame: pd.DataFrame | None, out_dir: Path | str, specs: Mapping[str, TableSpec] | None = None
               ) -> list[Path]:
    out_dir, written = Path(out_dir), []
    for name, spec in (specs or SPECS).items():
        render(spec, frame, out_dir / f"{name}.csv", out_dir / f"{name}.tex")
        written += [out_dir / f"{name}.csv", out_dir / f"{name}.tex"]
    return written
