"""The paper's tables: specs (which runs × benchmarks × metrics) → wide frames → CSV + LaTeX, and the paper side by side.

One obvious place for each thing (every name is also importable from `prift.tables`):
- prift.tables.specs      `TableSpec`, the paper's Tables 2-11 (`SPECS`), specs from dicts / the project config;
- prift.tables.cells      the long metrics frame (`load_metrics`) → the cells of a spec (`layout`, `evaluate`) → a
                          wide frame (`build_table`) and its marks (`marks`); several seeds: the means over seeds
                          and their spread (`seed_tables`), the pooled long frame (`pool_seeds`);
- prift.tables.rendering  CSV + LaTeX (`render`, `render_all`; written atomically by prift.io);
- prift.tables.paper      the paper's transcriptions (config/paper/table{N}.csv: `load_paper`), ours | paper | Δ
                          (`compare`, `side_by_side`, `render_comparison`) and the paper's own inconsistencies
                          (`paper_inconsistencies`, `paper_cross_check`).
- prift.tables.paired     paired comparisons of methods on the same problems (imported as a module).

Conventions
- An "Average" column is the unweighted mean of the row's per-benchmark values of the same metric, computed here
  and never copied from the frame; it is NaN as soon as one input is missing. Its CI assumes independent benchmarks:
  se = sqrt(sum se_i^2) / n with se_i = (ci_high - ci_low) / (2 * 1.96).
- Best (\\textbf) and second-best (\\underline) are dense ranks of the values *as printed* (2 decimals) per
  (model group, column); ties share a mark; rows whose method key is in `mark_exclude` ("original" by default) are
  neither marked nor ranked. The paper itself ranks Original too (Tables 3, 4, 10, 11): set mark_exclude=() for that.
- A method key may list alternatives "a|b": the first one present in the frame is used.
"""
import importlib

# Every name of the four modules is importable from `prift.tables`, imported on first use (PEP 562): a verb that needs
# only the specs (each job validating its config, prift.config.resolve_tables) does not pay for pandas.
_HOME = {name: module for module, names in {
    "specs": (
        "AVG_PASS16", "BENCHMARK_LABELS", "CODE_BENCH", "Group", "MATH_BENCH", "MED_BENCH", "METHOD_LABELS",
        "METRIC_LABELS", "Row", "SPECS", "TableSpec", "resolve_specs", "spec_from_dict", "specs_from_config",
    ),
    "cells": (
        "AVERAGE", "Cell", "DELTA", "Key", "MISSING", "NAN_STAT", "OPTIONAL_KEYS", "PAPER_KEYS", "RECORD_KEYS",
        "Stat", "TOL", "Z95", "build_table", "evaluate", "layout", "load_metrics", "marks", "pool_seeds",
        "seed_frames", "seed_tables", "_grid",
    ),
    "rendering": (
        "latex_escape", "render", "render_all", "to_csv_text", "to_latex_text",
    ),
    "paper": (
        "PAPER_DIR", "PAPER_NOTES", "compare", "comparison_csv_text", "comparison_latex_text", "comparison_spec",
        "load_all_paper", "load_paper", "paper_cross_check", "paper_findings", "paper_frame_for",
        "paper_inconsistencies", "render_comparison", "side_by_side",
    ),
}.items() for name in names}


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f"prift.tables.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'prift.tables' has no attribute '{name}'")


def __dir__():
    return sorted({*globals(), *_HOME})
