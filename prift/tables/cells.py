"""The long metrics frame → the cells of a table → a wide frame, and its best / second-best marks.

Input is one long-format metrics frame (`load_metrics`): one record per (run, benchmark, metric) with keys
run, domain, backbone, method, variant ("" by default), benchmark, metric, value (percent), ci_low, ci_high,
n_problems. `layout` lists the cells a spec shows; `evaluate` gives each (value, ci_low, ci_high), `build_table`
fills the wide frame (missing → NaN, never an error) and `marks` ranks it.

Several seeds (prift.seeds: runs `m@seed=s` beside the first seed's `m`): `seed_tables` gives the mean over seeds of
each cell (an average over benchmarks is the mean of the seeds' averages; `build_table` is that table alone) and the
seed-to-seed standard deviation (ddof 1; NaN where a cell has one seed, e.g. `original`), and `pool_seeds` gives
the long frame of the seeds' means for the side by side with the paper: its interval is the mean of the seeds'
bootstrap half-widths around the mean (problem resampling only: exact when the seeds' problem-level errors are fully
correlated, conservative otherwise; the seed-to-seed spread is `seed_tables`').
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from prift.seeds import seed_order, split_seed
from prift.tables.specs import TableSpec


AVERAGE = "average"          # benchmark key of printed averages in the paper transcription
DELTA = "delta:"             # metric prefix of printed gains (Table 5)
MISSING = "—"                # shown for cells without data
Z95 = 1.959963984540054
TOL = 0.01                   # a printed 2-decimal average may differ from the mean of 2-decimal inputs by this much

RECORD_KEYS = ("run", "domain", "backbone", "method", "variant", "benchmark", "metric", "value",
               "ci_low", "ci_high", "n_problems")
OPTIONAL_KEYS = {"variant": ""}  # keys a metrics record may omit, with their default
PAPER_KEYS = ("backbone", "method", "variant", "benchmark", "metric", "value", "mark")


def _read_records(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, Mapping):
        data = data.get("records", [data])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of metric records, got {type(data).__name__}")
    out = []
    for i, rec in enumerate(data):
        if not isinstance(rec, Mapping):
            raise ValueError(f"{path}: record {i} is not an object")
        missing = [k for k in RECORD_KEYS if k not in rec and k not in OPTIONAL_KEYS]
        if missing:
            raise ValueError(f"{path}: record {i} misses key(s) {missing}")
        out.append({k: rec.get(k, OPTIONAL_KEYS.get(k)) for k in RECORD_KEYS})
    return out


def _normalise(frame: pd.DataFrame, keys: Iterable[str]) -> pd.DataFrame:
    frame = frame.copy()
    for k in keys:
        if k not in frame:
            frame[k] = "" if k in ("variant", "mark", "run", "domain") else math.nan
    for k in ("run", "domain", "backbone", "method", "variant", "benchmark", "metric", "mark"):
        if k in frame:
            frame[k] = frame[k].fillna("").astype(str)
    for k in ("value", "ci_low", "ci_high", "n_problems"):
        if k in frame:
            frame[k] = pd.to_numeric(frame[k], errors="coerce").astype(float)
    return frame


def load_metrics(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Concatenate metrics JSON files (each a list of records) into one long frame."""
    records = []
    for p in paths:
        records.extend(_read_records(Path(p)))
    return _normalise(pd.DataFrame(records, columns=list(RECORD_KEYS)), RECORD_KEYS)


@dataclass(frozen=True)
class Cell:
    row: tuple[str, str]            # (group label, row label)
    col: tuple[str, str]            # (benchmark label, metric label)
    backbone: str
    method: str                     # may hold alternatives "a|b"
    variant: str
    benchmarks: tuple[str, ...]     # one benchmark, or those it is the mean of
    metric: str
    printed_benchmark: str          # where the paper prints it: the benchmark, or AVERAGE
    base_variant: str | None = None  # a gain cell: value(variant) - value(base_variant)

    @property
    def is_gain(self) -> bool:
        return self.base_variant is not None

    @property
    def is_mean(self) -> bool:
        return len(self.benchmarks) > 1


def _gain_label(metric_label: str) -> str:
    return f"Δ {metric_label}"


def layout(spec: TableSpec) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[Cell]]:
    """Row index, column index and every cell of a spec, in display order (canonical orientation)."""
    bench_keys = tuple(k for k, _ in spec.columns)
    cols = []  # (benchmark label, metric label, benchmarks, printed benchmark, metric key, rule key, gain)
    if spec.cells is not None:
        for ckey, clabel in spec.columns:
            for mkey, mlabel in spec.metrics:
                cols.append((clabel, mlabel, spec.aggregate, AVERAGE, mkey, ckey, False))
    else:
        groups = [(b, (b,), b, label) for b, label in spec.columns] if spec.show_benchmarks else []
        if spec.average:
            groups.append((AVERAGE, bench_keys, AVERAGE, spec.average_label))
        for _, benches, printed, blabel in groups:
            for mkey, mlabel in spec.metrics:
                cols.append((blabel, mlabel, benches, printed, mkey, None, False))
                if spec.gain_from is not None:
                    cols.append((blabel, _gain_label(mlabel), benches, printed, mkey, None, True))
    rows, cells = [], []
    for g in spec.models:
        for rlabel, method, variant in spec.group_rows(g):
            rows.append((g.label, rlabel))
            for blabel, mlabel, benches, printed, mkey, rule, gain in cols:
                m, v = (method, variant) if rule is None else spec.cells[method][rule]
                cells.append(Cell((g.label, rlabel), (blabel, mlabel), g.backbone, m, v, tuple(benches), mkey,
                                  printed, spec.gain_from if gain else None))
    return rows, [(c[0], c[1]) for c in cols], cells


Key = tuple[str, str, str, str, str]
Stat = tuple[float, float, float]   # value, ci_low, ci_high


def _index(frame: pd.DataFrame | None) -> dict[Key, Stat]:
    if frame is None or len(frame) == 0:
        return {}
    frame = _normalise(frame, ("backbone", "method", "variant", "benchmark", "metric", "value", "ci_low", "ci_high"))
    keys = list(zip(frame.backbone, frame.method, frame.variant, frame.benchmark, frame.metric))
    idx = {}
    for k, v, lo, hi in zip(keys, frame.value, frame.ci_low, frame.ci_high):
        if k in idx:
            warnings.warn(f"duplicate metric record {k}: the last one is used", stacklevel=3)
        idx[k] = (v, lo, hi)
    return idx


def _se(stat: Stat) -> float:
    return (stat[2] - stat[1]) / (2 * Z95)


def _combine(value: float, ses: list[float]) -> Stat:
    if not ses or any(math.isnan(s) for s in ses):
        return (value, math.nan, math.nan)
    half = Z95 * math.sqrt(sum(s * s for s in ses))
    return (value, value - half, value + half)


NAN_STAT: Stat = (math.nan, math.nan, math.nan)


def _plain(idx, bb, m, var, cell: Cell, printed: bool) -> Stat:
    if printed or not cell.is_mean:
        hit = idx.get((bb, m, var, cell.printed_benchmark, cell.metric))
        if hit is not None or not cell.is_mean:
            return hit if hit is not None else NAN_STAT
    stats = [idx.get((bb, m, var, b, cell.metric)) for b in cell.benchmarks]
    if any(s is None or math.isnan(s[0]) for s in stats):
        return NAN_STAT
    n = len(stats)
    return _combine(sum(s[0] for s in stats) / n, [_se(s) / n for s in stats])


def evaluate(cell: Cell, idx: Mapping[Key, Stat], printed: bool = False) -> Stat:
    """(value, ci_low, ci_high) of a cell. printed=True reads printed averages/gains first (paper transcriptions);
    otherwise averages and gains are always computed from per-benchmark values."""
    for m in cell.method.split("|"):
        if cell.is_gain:
            hit = idx.get((cell.backbone, m, cell.variant, cell.printed_benchmark, DELTA + cell.metric)) \
                if printed else None
            if hit is not None:
                return hit
            a = _plain(idx, cell.backbone, m, cell.variant, cell, printed)
            b = _plain(idx, cell.backbone, m, cell.base_variant, cell, printed)
            stat = _combine(a[0] - b[0], [_se(a), _se(b)])
        else:
            stat = _plain(idx, cell.backbone, m, cell.variant, cell, printed)
        if not math.isnan(stat[0]):
            return stat
    return NAN_STAT


def _frame(spec: TableSpec, values: dict) -> pd.DataFrame:
    rows, cols, _ = layout(spec)
    table = pd.DataFrame(math.nan, index=pd.MultiIndex.from_tuples(rows, names=list(spec.row_header)),
                         columns=pd.MultiIndex.from_tuples(cols, names=["benchmark", "metric"]), dtype=object)
    for (r, c), v in values.items():
        table.loc[r, c] = v
    return table


def _grid(spec: TableSpec, frame: pd.DataFrame | None, printed: bool = False) -> pd.DataFrame:
    idx = _index(frame)
    _, _, cells = layout(spec)
    return _frame(spec, {(c.row, c.col): evaluate(c, idx, printed)[0] for c in cells}).astype(float)


def seed_frames(frame: pd.DataFrame | None) -> list[pd.DataFrame | None]:
    """The metrics frame of each seed, the first seed's first, method keys without their seed (prift.seeds)."""
    if frame is None or len(frame) == 0:
        return [frame]
    split = [split_seed(m) for m in frame.method]
    seed_col = pd.Series([s for _, s in split], index=frame.index, dtype=object)
    base = frame.assign(method=[m for m, _ in split])
    seeds = sorted(set(seed_col), key=seed_order)
    return [base[seed_col.map(lambda x, s=s: x == s)] for s in seeds]


def seed_tables(spec: TableSpec, frame: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(the wide table, its seed-to-seed spread): with one seed, the table and None; with several, each cell's mean
    over the seeds that have it and their standard deviation (ddof 1; NaN for a cell of one seed)."""
    grids = [_grid(spec, f) for f in seed_frames(frame)]
    if len(grids) == 1:
        return grids[0], None
    values = np.stack([g.to_numpy(dtype=float) for g in grids])
    count = np.sum(~np.isnan(values), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a cell no seed has stays NaN
        mean, sd = np.nanmean(values, axis=0), np.where(count >= 2, np.nanstd(values, axis=0, ddof=1), np.nan)
    index, columns = grids[0].index, grids[0].columns
    return pd.DataFrame(mean, index=index, columns=columns), pd.DataFrame(sd, index=index, columns=columns)


def build_table(spec: TableSpec, frame: pd.DataFrame | None) -> pd.DataFrame:
    """Wide table: rows (model label, row label), columns (benchmark label, metric label); missing cells NaN. With
    several seeds, each cell is the mean over the seeds that have it."""
    return seed_tables(spec, frame)[0]


def pool_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """The long metrics frame with each (backbone, method, variant, benchmark, metric) pooled over its seeds: the
    mean value, the mean of the seeds' interval half-widths around it (module doc), `n_seeds`."""
    if frame is None or len(frame) == 0:
        return frame
    frames = seed_frames(frame)
    if len(frames) == 1:
        return frame.assign(n_seeds=1)
    both = pd.concat(frames)
    keys = ["backbone", "method", "variant", "benchmark", "metric"]
    half = (both.ci_high - both.ci_low) / 2
    pooled = both.assign(half=half).groupby(keys, sort=False).agg(
        run=("run", "first"), domain=("domain", "first"), value=("value", "mean"), half=("half", "mean"),
        n_problems=("n_problems", "first"), n_seeds=("value", "size")).reset_index()
    pooled["ci_low"], pooled["ci_high"] = pooled.value - pooled.half, pooled.value + pooled.half
    return pooled[list(RECORD_KEYS) + ["n_seeds"]]



def _shown(v: float) -> float:
    """The value as printed with 2 decimals (marks follow what a reader sees)."""
    return float(f"{v:.2f}")


def _rank_marks(values: list[float], second: bool) -> list[str]:
    shown = [_shown(v) for v in values if not math.isnan(v)]
    levels = sorted(set(shown), reverse=True)
    if len(shown) < 2:
        return [""] * len(values)
    best = levels[0]
    runner = levels[1] if second and len(levels) > 1 else None
    out = []
    for v in values:
        s = math.nan if math.isnan(v) else _shown(v)
        out.append("b" if s == best else "u" if runner is not None and s == runner else "")
    return out


def marks(spec: TableSpec, table: pd.DataFrame, mark_exclude: Iterable[str] | None = None) -> pd.DataFrame:
    """'b' (best) / 'u' (second best) / '' per cell, ranked per (model group, column) among eligible rows."""
    exclude = set(spec.mark_exclude if mark_exclude is None else mark_exclude)
    _, _, cells = layout(spec)
    out = pd.DataFrame("", index=table.index, columns=table.columns, dtype=object)
    by_group: dict[tuple[str, tuple[str, str]], list[Cell]] = {}
    for c in cells:
        if not c.is_gain and c.method.split("|")[0] not in exclude:
            by_group.setdefault((c.row[0], c.col), []).append(c)
    for (_, col), group in by_group.items():
        for c, mk in zip(group, _rank_marks([table.loc[c.row, col] for c in group], spec.mark_second)):
            out.loc[c.row, col] = mk
    return out
