"""The validated config and the paths and run lists derived from it (shared by the CLI and the Snakefile).

Runs are driven by the tables: every (domain, backbone, method) that some table of `tables:` shows is trained and
evaluated on that table's benchmarks. `original` is the backbone itself, evaluated without fine-tuning.
"""
from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from pathlib import Path

import yaml

from prift.paths import Layout

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
ORIGINAL = "original"
RL_SUFFIX = "+rl"     # method `<init>+rl`: DAPO from the SFT checkpoint of method <init> (config `rl:`; Table 5)
RL_VARIANT = "rl"     # the metrics `variant` of RL runs (their `method` is the init)


def rl_init(method: str) -> str | None:
    """The init method of an RL method name (`prift-mass+rl` → `prift-mass`), None for any other method."""
    return method[:-len(RL_SUFFIX)] if method.endswith(RL_SUFFIX) else None


class ConfigError(ValueError):
    pass


# libyaml's parser where PyYAML has it (its wheels ship it): the same YAML 1.1 documents as yaml.safe_load, several
# times faster - every job of the DAG validates its config against the schema.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path):
    """A YAML file as yaml.safe_load reads it."""
    return yaml.load(Path(path).read_text(), Loader=_YAML_LOADER)


@functools.lru_cache(maxsize=None)
def _schema(path: Path) -> dict:
    return read_yaml(path)


def suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def schema_errors(cfg: dict, schema_path: Path = SCHEMA) -> list[str]:
    import jsonschema
    validator = jsonschema.Draft202012Validator(_schema(schema_path))
    msgs = []
    for e in sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        if e.validator == "additionalProperties":
            extra = [k for k in e.instance if k not in e.schema.get("properties", {})]
            known = sorted(e.schema.get("properties", {}))
            for k in extra:
                msgs.append(f"config key '{key + '.' if key != '<top level>' else ''}{k}': unknown key"
                            f"{suggest(k, known)}; allowed here: {known}")
        else:
            msgs.append(f"config key '{key}': {e.message}")
    return msgs


def validate(cfg: dict) -> dict:
    """The config checked (schema, cross-references, figures, then what it points at: prift.preflight), with its
    defaults and figure sweeps added; every problem found is one line of the ConfigError."""
    from prift import preflight as P
    from prift.crossrefs import check_reference_tokenizers, check_references
    from prift.seeds import check_seeds, expand_seeds
    from prift.sweeps import check_figures, expand_figures
    numbers_from_yaml11(cfg)
    msgs = schema_errors(cfg)
    if not msgs:
        msgs = resolve_training(cfg) + resolve_tables(cfg)
    if not msgs:
        names = check_references(cfg) + check_figures(cfg) + check_seeds(cfg)
        msgs = names + P.check_paths(cfg) + P.check_batches(cfg) + P.check_samples(cfg)
        if not names:  # checks over the runs, which need every name to resolve
            msgs += check_reference_tokenizers(cfg)
            # the held-out examples of every domain, Fig. 1c's reference domains included
            cfg = expand_figures(expand_seeds(with_defaults(cfg)))
            msgs += P.check_heldout(cfg)
    if msgs:
        raise ConfigError("invalid config:\n  " + "\n  ".join(msgs))
    return cfg


# ----------------------------------------------------------------------------------------------------------------------
# What the config says once and validation spells out for the code: each domain's training recipe (`training.default`
# with the domain's overrides) and the runs of the paper's tables (prift.tables.SPECS). Both are idempotent: a
# validated config resolves to itself (the DAG hands its verbs the validated config, which they validate again).

DEFAULT_RECIPE = "default"


def main_table(cfg: dict) -> str:
    """The table the report opens on: `report.main_table`, else the paper's main table (table3) when the config has
    it, else the config's first table."""
    main = (cfg.get("report") or {}).get("main_table")
    return main or ("table3" if "table3" in cfg["tables"] else next(iter(cfg["tables"])))
# the figures of `figures:` by what they are drawn from (prift.sweeps)
SWEEP_FIGURES = ("fig1c", "fig6a", "fig6b")   # points → metrics files
PROBE_FIGURES = ("fig4", "fig5")              # the drift probes of some runs
CURVE_FIGURES = ("fig3b",)                    # pass@k curves from grades

TABLE_RUNS = ("backbones", "methods", "benchmarks", "metrics")   # what a table's runs are made of


def resolve_training(cfg: dict) -> list[str]:
    """`training: {default: {...}, <domain>: {...}}` → one whole recipe per domain, `training.<domain>`, as the code
    reads it: the default with the domain's own keys over it (a domain without an entry takes the default as it is),
    `default` removed. Without a `default`, each domain gives its whole recipe. In place; returns the problems."""
    training, domains = cfg["training"], cfg["domains"]
    msgs = [f"config key 'training.{d}': no domain '{d}'{suggest(d, domains)} (a recipe is the training of one "
            f"domain of `domains:`; '{DEFAULT_RECIPE}' is shared by all)"
            for d in training if d != DEFAULT_RECIPE and d not in domains]
    if DEFAULT_RECIPE not in training:
        return msgs
    if DEFAULT_RECIPE in domains:
        msgs.append(f"config key 'domains.{DEFAULT_RECIPE}': the name of the shared training recipe "
                    f"(training.{DEFAULT_RECIPE}); rename the domain")
    if msgs:
        return msgs
    default = training.pop(DEFAULT_RECIPE)
    for d in domains:
        training[d] = {**default, **training.get(d, {})}
    return msgs


def paper_table_runs(name: str) -> dict:
    """The runs of the paper's table `name` (prift.tables.SPECS[name]) in the config's terms: {backbones, methods (one
    list, or a mapping backbone → list where the backbones show different methods), benchmarks, metrics}. The run
    behind a row is its method (its cells' methods, column by column, for a table of rules as columns: Table 2);
    `<init>+rl` for a row of variant "rl" (Table 5); the last of alternatives `a|b` (the paper's transcription names
    the first: Table 8's rows of a student's own statistics are the runs `prift-prob`)."""
    from prift.tables.specs import SPECS
    spec = SPECS[name]

    def run(method: str, variant: str) -> str:
        m = method.split("|")[-1]
        return f"{m}{RL_SUFFIX}" if variant == RL_VARIANT else m

    per: dict[str, list[str]] = {}
    for g in spec.models:
        rows = spec.group_rows(g)
        if spec.cells is not None:
            methods = [run(*spec.cells[r[1]][c]) for c, _ in spec.columns for r in rows]
        else:
            methods = [run(r[1], r[2]) for r in rows]
        per.setdefault(g.backbone, []).extend(methods)
    per = {b: list(dict.fromkeys(ms)) for b, ms in per.items()}
    first = next(iter(per.values()))
    return {"backbones": list(per),
            "methods": list(first) if all(ms == first for ms in per.values()) else per,
            "benchmarks": list(spec.aggregate) if spec.cells is not None else [k for k, _ in spec.columns],
            "metrics": dict(spec.metrics)}


def resolve_tables(cfg: dict) -> list[str]:
    """The paper's tables are defined once, in prift.tables.SPECS: a table of `tables:` named after one of them takes
    the runs it does not list (backbones, methods, benchmarks, metrics: paper_table_runs) from it, so that the paper
    config names its tables and the DAG runs what they show; a config of its own (the demo's Table 3 on a tiny
    backbone) lists its own. A `paper_layout` table is rendered with the paper's rows, columns and cells, hence shows
    the paper's runs and lists none (or exactly those: a validated config). Any other table lists all four. The
    config keeps what is its own: the domain (which data: Table 2 is medical-lowdata), the caption, `paired`. In
    place; returns the problems."""
    from prift.tables.specs import SPECS
    msgs = []
    for t, spec in cfg["tables"].items():
        if t not in SPECS:
            if spec.get("paper_layout"):
                msgs.append(f"config key 'tables.{t}.paper_layout': no paper table named '{t}'"
                            f"{suggest(t, SPECS)}; known: {sorted(SPECS)}")
            missing = [k for k in TABLE_RUNS if k not in spec]
            if missing:
                msgs.append(f"config key 'tables.{t}': give its {', '.join(missing)} (only the paper's tables, "
                            f"{sorted(SPECS)}, take them from prift.tables.SPECS)")
            continue
        paper = paper_table_runs(t)
        for key in TABLE_RUNS:
            if key not in spec:
                spec[key] = copy.deepcopy(paper[key])
            elif spec.get("paper_layout") and spec[key] != paper[key]:
                msgs.append(f"config key 'tables.{t}.{key}': a paper_layout table shows the paper's runs "
                            f"(prift.tables.SPECS['{t}']: {paper[key]}); leave it out")
    return msgs


# YAML 1.2's floats that YAML 1.1 (PyYAML, and Snakemake's config loader) reads as strings: an exponent without a dot
# (2e-3) or without a sign (1.5e3).
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def numbers_from_yaml11(cfg: dict, schema_path: Path = SCHEMA) -> dict:
    """Where the schema wants a number and the config has a string such as '2e-3' (YAML 1.1 reads exponents without
    a dot as strings), the number (an int where the schema wants an integer and the value is whole). Strings the
    schema wants as strings are left alone (an unquoted revision 1234e56 stays a string). In place; returns cfg."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(_schema(schema_path))

    def walk(errors):
        for e in errors:
            yield e
            yield from walk(e.context or [])

    fixes = []
    for e in walk(validator.iter_errors(cfg)):
        if e.validator != "type" or not isinstance(e.instance, str) or not e.absolute_path:
            continue
        if not _EXPONENT_FLOAT.fullmatch(e.instance.strip()):
            continue
        types = [e.validator_value] if isinstance(e.validator_value, str) else list(e.validator_value)
        value = float(e.instance)
        if "number" not in types:
            if "integer" not in types or not value.is_integer():
                continue
            value = int(value)
        fixes.append((list(e.absolute_path), value))
    for path, value in fixes:
        node = cfg
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return cfg


def with_defaults(cfg: dict) -> dict:
    cfg.setdefault("seed", 0)
    cfg.setdefault("results", "results")
    cfg.setdefault("scoring", {})
    cfg.setdefault("evaluation", {})
    cfg.setdefault("analysis", {})
    for d in cfg["domains"].values():
        d.setdefault("template", "plain")
    return cfg


def read(path: str | Path) -> dict:
    """The config file as written (not validated, sweeps not expanded), its numbers such as 2e-3 read as numbers
    (numbers_from_yaml11)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    # The DAG hands the verbs its validated config as JSON, whose floats (5e-05) YAML 1.1 would read as strings.
    cfg = (json.loads(path.read_text()) if path.suffix == ".json" else read_yaml(path)) or {}
    return numbers_from_yaml11(cfg) if isinstance(cfg, dict) else cfg


def load(path: str | Path, overrides: dict | None = None) -> dict:
    cfg = read(path)
    if overrides:
        cfg = deep_merge(cfg, overrides)
    return validate(cfg)


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Runs and paths

def table_methods(spec: dict, backbone: str) -> list[str]:
    """The methods a table shows for one of its backbones (`methods` is one list, or a mapping backbone → list)."""
    methods = spec["methods"]
    return list(methods[backbone] if isinstance(methods, dict) else methods)


def table_cells(spec: dict) -> list[tuple[str, str, str]]:
    """(backbone, method, benchmark) of every cell a table reads, in table order. An RL run (`<init>+rl`) also reads
    its init's cell: the gain over the checkpoint before RL (Table 5)."""
    cells = {}
    for b in spec["backbones"]:
        for m in table_methods(spec, b):
            for bench in spec["benchmarks"]:
                if rl_init(m) is not None:
                    cells[(b, rl_init(m), bench)] = None
                cells[(b, m, bench)] = None
    return list(cells)


def table_runs(cfg: dict) -> list[tuple[str, str, str]]:
    """(domain, backbone, method) of every run some table shows, `original` included, in a stable order."""
    seen = {}
    for spec in cfg["tables"].values():
        for b, m, _ in table_cells(spec):
            seen[(spec["domain"], b, m)] = None
    return list(seen)


def table_runs_of(cfg: dict, table: str) -> list[tuple[str, str, str]]:
    """(domain, backbone, method) of the runs one table shows, `original` included."""
    spec = cfg["tables"][table]
    return list(dict.fromkeys((spec["domain"], b, m) for b, m, _ in table_cells(spec)))


def probed_domains(cfg: dict) -> set[str] | None:
    """The domains whose SFT runs carry drift probes (analysis.every > 0): those of `analysis.tables` and of the
    probe figures (Fig. 4, 5); None = every domain (no `analysis.tables` given); empty with probes off. Only these
    domains set examples aside for the probes."""
    an = cfg.get("analysis") or {}
    if not an.get("every"):
        return set()
    if not an.get("tables"):
        return None
    figs = cfg.get("figures") or {}
    return ({d for t in an["tables"] for d, _, _ in table_runs_of(cfg, t)}
            | {figs[f]["domain"] for f in PROBE_FIGURES if f in figs})


def sft_runs(cfg: dict) -> list[tuple[str, str, str]]:
    return [r for r in table_runs(cfg) if r[2] != ORIGINAL and rl_init(r[2]) is None]


def table_layouts(cfg: dict) -> dict[str, dict]:
    """The `tables:` section in the dict format of prift.tables.specs_from_config: a per-backbone methods mapping
    becomes `backbones: {backbone: {label, methods}}`; a `paper_layout` table keeps only what does not change the
    paper's layout (its rows, columns and cells come from prift.tables.SPECS)."""
    out = {}
    for name, spec in cfg["tables"].items():
        d = {k: v for k, v in spec.items() if k not in ("paper_layout", "paired")}
        if spec.get("paper_layout"):
            d = {k: spec[k] for k in ("domain", "caption", "metrics") if k in spec}
        elif isinstance(spec["methods"], dict):
            d.pop("methods")
            d["backbones"] = {b: {"label": cfg["backbones"][b]["label"], "methods": _rows(cfg, table_methods(spec, b))}
                              for b in spec["backbones"]}
        else:
            d["methods"] = _rows(cfg, spec["methods"])
        if not spec.get("paper_layout") and all(rl_init(m) for b in spec["backbones"] for m in table_methods(spec, b)):
            d["gain_from"] = ""      # RL rows: Δ = value after RL − value of the same checkpoint before RL
        out[name] = d
    return out


def _rows(cfg: dict, methods: list[str]) -> list:
    """Table rows of a methods list: an RL run `<init>+rl` is the row [label of <init>, <init>, "rl"]."""
    return [m if rl_init(m) is None else [cfg["methods"][rl_init(m)]["label"], rl_init(m), RL_VARIANT]
            for m in methods]


def reference_of(cfg: dict, backbone: str, method: str) -> str | None:
    """The backbone whose cached reference pass a run of `method` on `backbone` reads (None: it reads none)."""
    from prift.methods import reference_of as of
    return of(cfg["methods"][method], backbone)


def labels(cfg: dict) -> dict[str, str]:
    """The display label of every method (RL runs `<init>+rl` included), backbone and benchmark of the config, and
    of `original`."""
    out = {**{k: v["label"] for k, v in cfg["methods"].items()}, ORIGINAL: "Original",
           **{k: v["label"] for k, v in cfg["backbones"].items()},
           **{k: v["label"] for k, v in cfg["benchmarks"].items()}}
    return out | {f"{m}{RL_SUFFIX}": f"{out[m]} + RL" for m in cfg["methods"]}


def results(cfg: dict) -> Path:
    return Path(cfg.get("results", "results"))


def layout(cfg: dict) -> Layout:
    """The paths of the config's results tree (prift.paths)."""
    return Layout(results(cfg))


def backbone_path(cfg: dict, backbone: str) -> str:
    """Where the weights of a backbone are: DAG-built dir, a fine-tuned run's dir (`run`: Fig. 1c's partly fine-tuned
    references), local path override, or hub id."""
    b = cfg["backbones"][backbone]
    if b.get("build"):
        return layout(cfg).backbone(backbone)
    if b.get("run"):
        return model_dir(cfg, b["run"]["domain"], b["run"]["backbone"], b["run"]["method"])
    return b.get("path") or b["hub"]


def resolve_weights(cfg: dict, path_or_id: str) -> str:
    """What a verb hands its loader (transformers, vLLM, lm-eval): a hub id whose backbone entry pins a `revision`
    becomes the local snapshot of that revision (downloaded, or from the cache when offline), so that every loader
    reads the pinned weights; anything else is returned unchanged."""
    revs = {b["revision"] for b in cfg["backbones"].values()
            if b.get("hub") == path_or_id and not b.get("path") and b.get("revision")}
    if not revs or Path(path_or_id).exists():
        return path_or_id
    if len(revs) > 1:
        raise ConfigError(f"backbones: {path_or_id} is pinned to several revisions ({', '.join(sorted(revs))}); "
                          f"give each its own local `path`")
    from huggingface_hub import snapshot_download
    return snapshot_download(path_or_id, revision=revs.pop())


def model_dir(cfg: dict, domain: str, backbone: str, method: str) -> str:
    """The weights of a run: the backbone's (`original`), the RL run's (`<init>+rl`) or the SFT run's final model."""
    if method == ORIGINAL:
        return backbone_path(cfg, backbone)
    if rl_init(method) is not None:
        return layout(cfg).rl_final(domain, backbone, rl_init(method))
    return layout(cfg).sft_final(domain, backbone, method)
