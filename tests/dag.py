"""The jobs Snakemake plans, read from `snakemake --summary` rather than from the dry run's printed listing.

`--summary` writes a table to stdout (tab-separated, one header line: output_file, date, rule, log-file(s), status,
plan) with one line per output file of every job of the DAG the targets need: its rule and whether the job will run
("update pending") or not ("no update"). The dry run's listing (`rule x:` blocks, the job-stats table) is text for
people and changes between Snakemake releases; this table is the same facts in columns.
"""
from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

from tests.conftest import REPO

COLUMNS = ("output_file", "date", "rule", "log-file(s)", "status", "plan")
PENDING = "update pending"


def summary(configfile, *targets, timeout=600) -> list[dict]:
    """One dict per output file of the DAG (keys: COLUMNS) for `targets` (default: the workflow's `all`)."""
    p = subprocess.run([sys.executable, "-m", "snakemake", "--summary", *map(str, targets), "--cores", "1",
                        "--configfile", str(configfile)], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    lines = p.stdout.splitlines()
    head = lines.index("\t".join(COLUMNS))
    rows = [dict(zip(COLUMNS, line.split("\t"))) for line in lines[head + 1:] if line]
    assert all(len(r) == len(COLUMNS) for r in rows), lines[head + 1:][:5]
    return rows


def planned(configfile, *targets, timeout=600) -> dict[str, set[str]]:
    """{rule: the output files of its jobs that will run}, for `targets`."""
    out = defaultdict(set)
    for r in summary(configfile, *targets, timeout=timeout):
        if r["plan"] == PENDING:
            out[r["rule"]].add(r["output_file"])
    return dict(out)
