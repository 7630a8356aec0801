"""The report's front page (`snakemake --report`): the run's main table, its paired comparisons and the mechanism
figures first; the costs and the config after them (workflow/report/workflow.rst includes this page).

Written as reStructuredText by a rule from the result files, so that the report is self-contained: the tables as
`csv-table` blocks holding their rows, the figures as PNG data inside the page.
"""
from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import Mapping, Sequence


def _cell(text: str) -> str:
    """A cell as reStructuredText reads it: `Avg@16` would otherwise become an e-mail link."""
    return text.replace("\\", "\\\\").replace("@", "\\@")


def _csv_block(title: str, rows: list[list[str]]) -> list[str]:
    rows = [[_cell(c) for c in r] for r in rows]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows[1:])
    body = ["   " + line for line in buf.getvalue().splitlines()]
    head = io.StringIO()
    csv.writer(head, lineterminator="").writerow(rows[0])
    return [f".. csv-table:: {title}", f"   :header: {head.getvalue()}", "", *body, ""]


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def paired_rows(path: Path, labels: Mapping[str, str]) -> list[list[str]]:
    """The average-over-benchmarks comparisons of a table's paired CSV, one row each."""
    rows = _read(path)
    if not rows:
        return []
    head = rows[0]
    col = {name: head.index(name) for name in head}
    out = [["model", "comparison", "metric", "Δ (points)", "95% interval", "Holm p", "significant"]]
    for r in rows[1:]:
        if r[col["benchmark"]] != "average":
            continue
        out.append([labels.get(r[col["backbone"]], r[col["backbone"]]),
                    f"{labels.get(r[col['method']], r[col['method']])} vs "
                    f"{labels.get(r[col['baseline']], r[col['baseline']])}",
                    r[col["metric"]], r[col["delta"]], f"[{r[col['ci_low']]}, {r[col['ci_high']]}]",
                    r[col["p_holm"]], "yes" if r[col["significant"]] == "True" else "no"])
    return out if len(out) > 1 else []


def front_page(table: str, caption: str, table_csv: Path, paired_csv: Path | None, figures: Sequence[Path],
               labels: Mapping[str, str]) -> str:
    lines = [f"Main table: {table}", "-" * (12 + len(table)), "", caption, ""]
    lines += _csv_block(f"{table} (ours)", _read(table_csv))
    pr = paired_rows(paired_csv, labels) if paired_csv and Path(paired_csv).exists() else []
    lines += ["Paired comparisons (average over the benchmarks)", "-" * 48, ""]
    lines += (_csv_block(f"{table}: method − baseline on the same problems", pr) if pr else
              ["No paired comparison for this table.", ""])
    shown = [f for f in figures if Path(f).exists()]
    if shown:
        lines += ["Mechanism figures", "-" * 17, "", ".. raw:: html", ""]
        for f in shown:
            data = base64.b64encode(Path(f).read_bytes()).decode()
            lines.append(f'   <figure><img alt="{Path(f).stem}" style="max-width:100%" '
                         f'src="data:image/png;base64,{data}"/><figcaption>{Path(f).stem}</figcaption></figure>')
        lines.append("")
    return "\n".join(lines) + "\n"
