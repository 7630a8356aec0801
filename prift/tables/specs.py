"""Table specs: which runs × benchmarks × metrics a table shows, in which order (`TableSpec`); the paper's
Tables 2-11 (`SPECS`); specs from plain dicts and from the project config (`spec_from_dict`, `specs_from_config`).

SPECS is the one definition of the paper's tables. The config's `tables:` names which tables a config makes and
what is its own (domain, caption, paired comparisons); a table named after a paper table takes the runs it does not
list - backbones, methods, benchmarks, metrics - from its spec here (prift.config.paper_table_runs, resolved at
validation), so config/config.yaml lists none and the DAG runs what these specs show. A config of its own (the
demo's Table 3 on a tiny backbone) lists its runs and renders them with the config's labels, the fields it leaves out
(marks, row header, average label) coming from the spec of the same name (`spec_from_dict`). A `paper_layout` table
renders with the spec itself (rows, columns and cells, e.g. Table 2's rules as columns) and shows its runs only.
A row's method key may list alternatives "a|b": the first present in the metrics is shown (the paper's
transcription, config/paper/, names the first); the run behind the row is the last (Table 8's rows of a student's
own statistics read the run `prift-prob`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


Row = tuple[str, str, str]  # (row label, method key, variant)


@dataclass(frozen=True)
class Group:
    """A block of rows: one backbone (or, as in Table 6, one method pair); `rows` overrides the spec's rows."""
    label: str
    backbone: str
    rows: tuple[Row, ...] | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    caption: str
    domain: str
    models: tuple[Group, ...]                    # row groups: (model label, backbone key[, rows])
    rows: tuple[Row, ...]                        # (row label, method key, variant) shown in every group without rows
    columns: tuple[tuple[str, str], ...]         # (benchmark key, label); with `cells`: (rule key, label)
    metrics: tuple[tuple[str, str], ...]         # (metric key, short label)
    average: bool = True                         # add an Average column group (mean of the columns, same metric)
    average_label: str = "Average"
    show_benchmarks: bool = True                 # False: only the Average group is shown (Tables 5, 7, 8)
    mark_exclude: tuple[str, ...] = ("original",)
    mark_second: bool = True                     # underline the second best
    gain_from: str | None = None                 # variant of the reference row: adds "Δ" = value - reference (Table 5)
    transpose: bool = False                      # LaTeX shows metrics as rows (Table 7)
    cells: Mapping[str, Mapping[str, tuple[str, str]]] | None = None  # row method → rule key → (method, variant)
    aggregate: tuple[str, ...] = ()              # with `cells`: each cell is the mean over these benchmarks
    row_header: tuple[str, str] = ("Model", "Method")
    paper_mark_exclude: tuple[str, ...] = ()     # rows the paper leaves out of its own bold/underline ranking

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        fix("models", tuple(g if isinstance(g, Group) else Group(g[0], g[1], _rows(g[2]) if len(g) > 2 else None)
                            for g in self.models))
        fix("rows", _rows(self.rows))
        for name in ("columns", "metrics"):
            fix(name, tuple((str(k), str(v)) for k, v in self.__dict__[name]))
        for name in ("mark_exclude", "aggregate", "row_header", "paper_mark_exclude"):
            fix(name, tuple(self.__dict__[name]))
        if self.cells is not None:
            fix("cells", {r: {c: tuple(mv) if not isinstance(mv, str) else (mv, "") for c, mv in m.items()}
                          for r, m in self.cells.items()})
        problems = []
        if not self.models:
            problems.append("no models")
        if not self.columns or not self.metrics:
            problems.append("needs columns and metrics")
        if self.cells is None and not self.show_benchmarks and not self.average:
            problems.append("show_benchmarks=False needs average=True")
        if self.cells is not None and not self.aggregate:
            problems.append("cells needs aggregate benchmarks")
        for g in self.models:
            if not (g.rows or self.rows):
                problems.append(f"group {g.label!r} has no rows")
        if problems:
            raise ValueError(f"table spec {self.name!r}: " + "; ".join(problems))

    def group_rows(self, group: Group) -> tuple[Row, ...]:
        return group.rows if group.rows else self.rows


def _rows(rows) -> tuple[Row, ...] | None:
    if rows is None:
        return None
    return tuple((str(r[0]), str(r[1]), str(r[2]) if len(r) > 2 and r[2] is not None else "") for r in rows)


MATH_BENCH = (("math500", "MATH-OAI"), ("minerva_math", "Minerva Math"), ("olympiadbench", "OlympiadBench"),
              ("aime24", "AIME24"), ("amc23", "AMC23"))
CODE_BENCH = (("humaneval_plus", "HumanEval+"), ("mbpp_plus", "MBPP+"), ("lcb_v5", "LCB v5"), ("lcb_v6", "LCB v6"))
MED_BENCH = (("medqa", "MedQA"), ("mmlu_medical", "MMLU"), ("medmcqa", "MedMCQA"))
AVG_PASS16 = (("avg@16", "Avg@16"), ("pass@16", "P@16"))

METHOD_LABELS = {"original": "Original", "sft": "SFT", "dft": "DFT", "eaft": "EAFT", "idft": "IDFT", "talr": "TALR",
                 "asft": "ASFT", "profit": "ProFit", "prift-prob": "PriFT-prob", "prift-mass": "PriFT-mass"}
BENCHMARK_LABELS = dict(MATH_BENCH + CODE_BENCH + MED_BENCH)
METRIC_LABELS = {"avg@16": "Avg@16", "pass@16": "P@16", "pass@1": "pass@1", "acc": "Acc"}


def _method_rows(*keys: str, variant: str = "", **labels: str) -> tuple[Row, ...]:
    return tuple((labels.get(k.replace("-", "_"), METHOD_LABELS[k]), k, variant) for k in keys)


_MATH_ALL = _method_rows("original", "sft", "dft", "eaft", "idft", "talr", "asft", "prift-prob", "prift-mass")
_CODE_ALL = _method_rows("original", "sft", "dft", "idft", "eaft", "talr", "asft", "prift-prob", "prift-mass")
_SMALL = _method_rows("original", "sft", "dft", "prift-prob", "prift-mass", original="Pretrained")
_RULES = (("original", "Original"), ("sft", "SFT"), ("p-rw", "$p_t$ rw."), ("p-top50", "$p_t$ top-50"),
          ("p-bot50", "$p_t$ bot.-50"), ("h-top50", "$H_t$ top-50"), ("h-bot50", "$H_t$ bot.-50"))


def _table2_cells(low: str) -> dict:
    on = {"original": ("original", ""), "sft": ("sft", low), "p-rw": ("dft", low)}
    pt = {"original": ("original", ""), "sft": ("sft", low), "p-rw": ("prift-prob", low)}
    for rule in ("p-top50", "p-bot50", "h-top50", "h-bot50"):
        on[rule], pt[rule] = (f"{rule}-online", low), (f"{rule}-pt", low)
    return {"online": on, "pt": pt}


def _pair(method: str) -> tuple[Row, ...]:
    return (("original", method, ""), ("pretrained-weight", f"{method}-pt", ""))


def _ref(backbone: str, ref: str) -> str:
    own = f"prift-prob-ref-{ref}"
    return f"{own}|prift-prob" if ref == backbone else own


SPECS: dict[str, TableSpec] = {s.name: s for s in [
    TableSpec("table2", "Average accuracy across three medical benchmarks (low-data regime). Pretrained token "
              "statistics consistently improve token reweighting compared with online statistics.", "medical",
              models=(("LLaMA-2-7B", "llama-2-7b"),),
              rows=(("Online model", "online", "lowdata"), ("Pretrained model", "pt", "lowdata")),
              columns=_RULES, metrics=(("acc", "Acc"),), average=False, cells=_table2_cells("lowdata"),
              aggregate=tuple(k for k, _ in MED_BENCH), mark_exclude=("original", "sft"), mark_second=False,
              row_header=("Model", "Token reweighting model"), paper_mark_exclude=("original", "sft")),
    TableSpec("table3", "Mathematical reasoning performance across five benchmarks with two different models. "
              "PriFT achieves the strongest overall performance on both models.", "math",
              models=(("Qwen2.5-Math (7B)", "qwen2.5-math-7b"), ("Qwen3-Base (8B)", "qwen3-8b-base")),
              rows=_MATH_ALL, columns=MATH_BENCH, metrics=AVG_PASS16),
    TableSpec("table4", "Code generation task performance using Qwen3-4B-Instruct. We report pass@1 accuracy on each "
              "benchmark and the average.", "code", models=(("Qwen3-4B-Instruct", "qwen3-4b-instruct"),),
              rows=_CODE_ALL, columns=CODE_BENCH, metrics=(("pass@1", "pass@1"),), average_label="Avg"),
    TableSpec("table5", "RL performance from different initialized SFT checkpoints, with the improvement over the "
              "same checkpoint before RL (points).", "math",
              models=(("Qwen2.5-Math 1.5B", "qwen2.5-math-1.5b"), ("Qwen3-8B Base", "qwen3-8b-base")),
              rows=_method_rows("sft", "dft", "prift-prob", "prift-mass", variant="rl"), columns=MATH_BENCH,
              metrics=(("avg@16", "Avg@16"), ("pass@16", "Pass@16")), show_benchmarks=False, gain_from="",
              row_header=("Model", "Init.")),
    TableSpec("table6", "Performance comparison between original and pretrained-weight variants on five mathematical "
              "reasoning benchmarks for Qwen2.5-Math-1.5B with 3 different baseline methods: EAFT, IDFT and TALR. "
              "We also report the average across all five benchmarks.", "math",
              models=tuple((METHOD_LABELS[m], "qwen2.5-math-1.5b", _pair(m)) for m in ("eaft", "idft", "talr")),
              rows=(), columns=MATH_BENCH, metrics=AVG_PASS16, mark_second=False, row_header=("Method", "Variant")),
    TableSpec("table7", "Effect of the non-target term in decomposed teacher-forced KD. We use Qwen2.5-Math-7B as "
              "the teacher and Qwen2.5-Math-1.5B as the student. $\\beta$ controls the strength of matching the "
              "teacher's non-target distribution.", "math", models=(("Qwen2.5-Math-1.5B", "qwen2.5-math-1.5b"),),
              rows=tuple((b, f"kd-beta{b}", "") for b in ("0.00", "0.25", "0.50", "0.75", "1.00")),
              columns=MATH_BENCH, metrics=(("avg@16", "Avg@16"), ("pass@16", "Pass@16")), show_benchmarks=False,
              mark_second=False, transpose=True, row_header=("Model", "Non-target term weight $\\beta$")),
    TableSpec("table8", "Effect of using cross-model token weighting signals in PriFT-prob.", "math",
              models=(("Qwen2.5-Math-1.5B", "qwen2.5-math-1.5b",
                       (("Qwen2.5-Math-1.5B", _ref("qwen2.5-math-1.5b", "qwen2.5-math-1.5b"), ""),
                        ("Qwen2.5-Math-7B", _ref("qwen2.5-math-1.5b", "qwen2.5-math-7b"), ""))),
                      ("Qwen2.5-1.5B", "qwen2.5-1.5b",
                       (("Qwen2.5-1.5B", _ref("qwen2.5-1.5b", "qwen2.5-1.5b"), ""),
                        ("Qwen2.5-Math-1.5B", _ref("qwen2.5-1.5b", "qwen2.5-math-1.5b"), "")))),
              rows=(), columns=MATH_BENCH, metrics=(("avg@16", "Avg@16"), ("pass@16", "Pass@16")),
              show_benchmarks=False, mark_second=False, row_header=("Model", "Token reweighting model")),
    TableSpec("table9", "Performance on medical question answering benchmarks using LLaMA-2-7B fine-tuned on MedMCQA. "
              "We report accuracy on MedQA, MMLU-Medical, MedMCQA, and their average.", "medical",
              models=(("LLaMA-2-7B", "llama-2-7b"),), columns=MED_BENCH, metrics=(("acc", "Acc"),),
              rows=_method_rows("original", "sft", "dft", "eaft", "idft", "talr", "asft", "prift-prob", "prift-mass",
                                original="Pretrained"), average_label="Avg."),
    TableSpec("table10", "Performance comparison on five mathematical reasoning benchmarks. We also report the "
              "average across all five benchmarks.", "math",
              models=(("Qwen2.5-Math (1.5B)", "qwen2.5-math-1.5b", _MATH_ALL), ("Qwen2.5 (1.5B)", "qwen2.5-1.5b"),
                      ("Qwen2.5-Instruct (1.5B)", "qwen2.5-1.5b-instruct"), ("DeepSeekMath (7B)", "deepseek-math-7b")),
              rows=_SMALL, columns=MATH_BENCH, metrics=AVG_PASS16),
    TableSpec("table11", "Additional code generation results on Qwen2.5-Coder-3B. We report pass@1 accuracy and the "
              "average across all four benchmarks.", "code", models=(("Qwen2.5-Coder-3B", "qwen2.5-coder-3b"),),
              rows=_CODE_ALL, columns=CODE_BENCH, metrics=(("pass@1", "pass@1"),), average_label="Avg"),
]}


_SPEC_FIELDS = {f.name for f in dataclasses.fields(TableSpec)}
_DICT_ALIASES = {"backbones": "models", "methods": "rows", "benchmarks": "columns"}


def _pairs(value, labels: Mapping[str, str], defaults: Mapping[str, str], what: str) -> tuple[tuple[str, str], ...]:
    """{key: label} | [key, ...] | [[key, label], ...] → ((key, label), ...)."""
    if isinstance(value, Mapping):
        return tuple((str(k), str(v) if v is not None else labels.get(k, defaults.get(k, k))) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append((item, labels.get(item, defaults.get(item, item))))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                out.append((str(item[0]), str(item[1])))
            else:
                raise ValueError(f"{what}: cannot read {item!r}")
        return tuple(out)
    raise ValueError(f"{what}: expected a mapping or a list, got {type(value).__name__}")


def _dict_rows(value, labels: Mapping[str, str], variant: str) -> tuple[Row, ...]:
    """methods: {key: label | [label, variant] | {label, variant}} | [key | [label, key(, variant)] | {...}, ...]."""
    rows = []
    items = value.items() if isinstance(value, Mapping) else [(None, v) for v in value]
    for key, v in items:
        if key is not None:
            if v is None or isinstance(v, str):
                rows.append((v or labels.get(key, METHOD_LABELS.get(key, key)), key, variant))
            elif isinstance(v, Mapping):
                rows.append((v.get("label", labels.get(key, METHOD_LABELS.get(key, key))), key,
                             v.get("variant", variant)))
            else:
                rows.append((v[0], key, v[1] if len(v) > 1 else variant))
        elif isinstance(v, str):
            rows.append((labels.get(v, METHOD_LABELS.get(v, v)), v, variant))
        elif isinstance(v, Mapping):
            rows.append((v.get("label", METHOD_LABELS.get(v["method"], v["method"])), v["method"],
                         v.get("variant", variant)))
        else:
            rows.append((v[0], v[1], v[2] if len(v) > 2 else variant))
    return tuple((str(a), str(b), str(c)) for a, b, c in rows)


def spec_from_dict(d: Mapping[str, Any], base: TableSpec | None = None,
                   labels: Mapping[str, Mapping[str, str]] | None = None) -> TableSpec:
    """A TableSpec from a plain dict; fields it does not give come from `base` (default: SPECS[d['name']]).

    Keys: the TableSpec field names, plus `models`/`backbones` ({backbone: label} or [backbone, ...] or
    {backbone: {label, methods}}), `methods`/`rows` ({method: label} or [method, ...] or [[label, method, variant]]),
    `benchmarks`/`columns` ({key: label} or [key, ...]), `metrics`, `variant` (default variant of the rows) and
    `base` (name of a SPECS entry to start from). `labels` = {"backbones"|"methods"|"benchmarks"|"metrics":
    {key: label}} fills labels that lists of keys leave out (e.g. from the project config).
    """
    d = dict(d)
    if "name" not in d:
        raise ValueError("table spec dict needs a 'name'")
    labels = labels or {}
    allowed = _SPEC_FIELDS | set(_DICT_ALIASES) | {"base", "variant"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(f"table spec {d['name']!r}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    if "base" in d:
        base_name = d.pop("base")
        if base_name not in SPECS:
            raise ValueError(f"table spec {d['name']!r}: unknown base {base_name!r}; known: {sorted(SPECS)}")
        base = SPECS[base_name]
    elif base is None:
        base = SPECS.get(d["name"])
    for alias, name in _DICT_ALIASES.items():
        if alias in d:
            if name in d:
                raise ValueError(f"table spec {d['name']!r}: give either {alias!r} or {name!r}")
            d[name] = d.pop(alias)
    variant = str(d.pop("variant", "") or "")
    kw: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    if base is not None:
        kw["models"], kw["name"] = base.models, d["name"]
    else:
        kw.update(caption=d["name"], domain="")
    method_labels = dict(labels.get("methods", {}))
    if "rows" in d:   # explicit rows replace every group's own rows too
        kw["rows"] = _dict_rows(d.pop("rows"), method_labels, variant)
        kw["models"] = tuple(Group(g.label, g.backbone) for g in kw.get("models", ()))
    elif variant and base is not None:
        kw["rows"] = tuple((r[0], r[1], variant) for r in base.rows)
    if "models" in d:
        m = d.pop("models")
        groups = []
        items = m.items() if isinstance(m, Mapping) else [(k, None) for k in m]
        for key, v in items:
            if isinstance(key, (list, tuple)):   # [[label, backbone], ...]
                groups.append(Group(str(key[0]), str(key[1])))
            elif isinstance(v, Mapping):
                rows = _dict_rows(v["methods"], method_labels, variant) if "methods" in v else None
                groups.append(Group(str(v.get("label", key)), str(key), rows))
            else:
                groups.append(Group(str(v or labels.get("backbones", {}).get(key, key)), str(key)))
        kw["models"] = tuple(groups)
        if "rows" not in kw or not kw["rows"]:
            kw["rows"] = tuple(r for g in base.models for r in (g.rows or ())) if base else ()
    if "columns" in d:
        kw["columns"] = _pairs(d.pop("columns"), labels.get("benchmarks", {}), BENCHMARK_LABELS, "benchmarks")
    if "metrics" in d:
        kw["metrics"] = _pairs(d.pop("metrics"), labels.get("metrics", {}), METRIC_LABELS, "metrics")
    for key in ("mark_exclude", "aggregate", "row_header", "paper_mark_exclude"):
        if key in d:
            kw[key] = tuple(d.pop(key) or ())
    kw.update(d)
    kw.setdefault("rows", ())
    for required in ("models", "columns", "metrics"):
        if required not in kw:
            raise ValueError(f"table spec {kw['name']!r}: missing {required!r}")
    return TableSpec(**kw)


def resolve_specs(overrides: Mapping[str, Mapping] | Iterable[Mapping] | None = None,
                  labels: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, TableSpec]:
    """SPECS with each override dict applied (a name already in SPECS inherits the fields the dict leaves out)."""
    specs = dict(SPECS)
    if overrides is None:
        return specs
    items = ([dict(v, name=k) for k, v in overrides.items()] if isinstance(overrides, Mapping) else list(overrides))
    for d in items:
        specs[d["name"]] = spec_from_dict(d, labels=labels)
    return specs


def specs_from_config(cfg: Mapping[str, Any]) -> dict[str, TableSpec]:
    """The tables of a validated project config (its `tables:` section), labels from its sections."""
    labels = {section: {k: v["label"] for k, v in (cfg.get(section) or {}).items()
                        if isinstance(v, Mapping) and "label" in v}
              for section in ("backbones", "methods", "benchmarks")}
    return {name: spec_from_dict(dict(d, name=name), labels=labels) for name, d in (cfg.get("tables") or {}).items()}
