"""Figure sweeps (config `figures:`): the runs each figure needs and the files it is drawn from.

Every point of a sweep is an ordinary method entry (Fig. 1c: also the reference's domain, training recipe and
backbone entries), added at validation time (`expand_figures`, called by prift.config.validate), so that the sft /
evaluate rules run it unchanged. A point whose method equals an existing entry (rule, source, params; the label
aside) reuses that entry: Fig. 6a's ρ = 0 is `dft`, ρ = 1 is `prift-prob`.
"""
from __future__ import annotations

from prift.config import CURVE_FIGURES, SWEEP_FIGURES, ConfigError, layout, suggest



def _num(x) -> str:
    return f"{x:g}"


def _core(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "label"}


def _same_method(cfg: dict, spec: dict) -> str | None:
    core = _core(spec)
    return next((k for k, m in cfg["methods"].items() if _core(m) == core), None)


def _rule_part(base: dict) -> dict:
    return {"rule": base["rule"], **({"params": dict(base["params"])} if base.get("params") else {})}


def sweep_points(cfg: dict, fig: str) -> list[dict]:
    """The points of a sweep figure in order: {x, series, method (key), spec (its entry)}; Fig. 1c's points also
    carry the entries of their reference (`domain`: {key, entry, training}, `backbone`: {key, entry}). Keys name
    existing equal methods where there are some (pure: the config is not changed)."""
    f = cfg["figures"][fig]
    base = cfg["methods"][f["method"]]
    pts = []

    def point(x, series, name, spec, **extra):
        pts.append({"x": x, "series": series, "method": _same_method(cfg, spec) or name, "spec": spec, **extra})

    if fig == "fig6a":
        for rho in f["rhos"]:
            src = ({"source": "online"} if rho == 0 else {"source": "pretrained"} if rho == 1
                   else {"source": "ema", "ema_rho": rho})
            point(rho, f"{base['label']}, EMA statistics source", f"{f['method']}@rho={_num(rho)}",
                  {"label": f"{base['label']} (EMA ρ={_num(rho)})", **_rule_part(base), **src})
    elif fig == "fig6b":
        for tau in f["taus"]:
            strict = f.get("strict", True)
            spec = {"label": f"{base['label']} (τ={_num(tau)})", **_rule_part(base), "source": base["source"],
                    "params": {**base.get("params", {}), "tau": tau, "strict": strict}}
            if strict and tau >= 1:  # m_t = 1[u_t > 1] selects no token by definition: intended, not a failure
                spec["min_selected_frac"] = 0
            if "reference" in base:
                spec["reference"] = base["reference"]
            point(tau, base["label"], f"{f['method']}@tau={_num(tau)}", spec)
    elif fig == "fig1c":
        dom, bb = cfg["domains"][f["domain"]], cfg["backbones"][f["backbone"]]
        for rm in f["reference_methods"]:
            rlabel = cfg["methods"][rm]["label"]
            series = f"{base['label']}, reference fine-tuned with {rlabel}"
            for size in f["sizes"]:
                if size == 0:  # the pretrained reference itself
                    point(0, series, f["method"], base)
                    continue
                dkey, bkey = f"{f['domain']}@ref{size}", f"{f['backbone']}+{rm}@{size}"
                data = {**(f.get("reference_data") or dom["train"]), "limit": size}
                dentry = {k: v for k, v in dom.items() if k != "variant"} | {"train": data}
                bentry = {"label": f"{bb['label']} + {rlabel} on {size}",
                          "run": {"domain": dkey, "backbone": f["backbone"], "method": rm},
                          **{k: bb[k] for k in ("size_b", "max_model_len", "tokenizer") if k in bb}}
                spec = {"label": f"{base['label']} (reference: {rlabel} on {size})", **_rule_part(base),
                        "source": "reference", "reference": bkey}
                point(size, series, f"{f['method']}@ref={rm}{size}", spec,
                      domain={"key": dkey, "entry": dentry, "training": cfg["training"][f["domain"]]},
                      backbone={"key": bkey, "entry": bentry})
    else:
        raise KeyError(f"'{fig}' is not a sweep figure ({SWEEP_FIGURES})")
    return pts


def curve_benchmarks(cfg: dict, fig: str = "fig3b") -> dict[str, tuple[str, dict]]:
    """{benchmark: (the benchmark entry sampled n times, its entry)} of the pass@k figure: `<b>@n=<n>` with a
    generation override of n, or the benchmark itself when it already samples n."""
    f = cfg["figures"][fig]
    out = {}
    for b in f["benchmarks"]:
        entry = cfg["benchmarks"][b]
        n_now = {**cfg["generation"], **entry.get("generation", {})}.get("n", 16)
        if n_now == f["n"]:
            out[b] = (b, entry)
        else:
            out[b] = (f"{b}@n={f['n']}", {**entry, "label": f"{entry['label']} (n={f['n']})",
                                          "generation": {**entry.get("generation", {}), "n": f["n"]}})
    return out


def _add(section: dict, key: str, entry: dict, what: str) -> None:
    if key in section and section[key] != entry:
        raise ConfigError(f"config key '{what}.{key}': the figure sweeps need this name for another entry "
                          f"(rename yours)")
    section[key] = entry


def expand_figures(cfg: dict) -> dict:
    """Adds the entries the figures' runs need (idempotent: an expanded config expands to itself)."""
    figs = cfg.get("figures") or {}
    for fig in SWEEP_FIGURES:
        if fig not in figs:
            continue
        for p in sweep_points(cfg, fig):
            if "domain" in p:
                _add(cfg["domains"], p["domain"]["key"], p["domain"]["entry"], "domains")
                _add(cfg["training"], p["domain"]["key"], p["domain"]["training"], "training")
                _add(cfg["backbones"], p["backbone"]["key"], p["backbone"]["entry"], "backbones")
            if p["method"] not in cfg["methods"]:
                cfg["methods"][p["method"]] = p["spec"]
    if "fig3b" in figs:
        for key, entry in curve_benchmarks(cfg).values():
            _add(cfg["benchmarks"], key, entry, "benchmarks")
    return cfg


def metric_names(cfg: dict, benchmark: str) -> set[str]:
    """The metrics a benchmark's metrics file holds (its kind's, prift.benchmarks)."""
    b = cfg["benchmarks"][benchmark]
    if b["kind"] == "math":
        k = (cfg.get("evaluation") or {}).get("k", 16)
        return {f"avg@{k}", f"pass@{k}"}
    if b["kind"] == "mcq":
        return {"acc"}
    return {"pass@1"}


def check_figures(cfg: dict) -> list[str]:
    msgs = []
    for fig, f in (cfg.get("figures") or {}).items():
        key = f"figures.{fig}"
        if f["domain"] not in cfg["domains"]:
            msgs.append(f"config key '{key}.domain': unknown domain '{f['domain']}'{suggest(f['domain'], cfg['domains'])}")
        if f["backbone"] not in cfg["backbones"]:
            msgs.append(f"config key '{key}.backbone': unknown backbone '{f['backbone']}'"
                        f"{suggest(f['backbone'], cfg['backbones'])}")
        for field in ("method", "baseline", "methods", "reference_methods"):
            for m in ([f[field]] if isinstance(f.get(field), str) else f.get(field, [])):
                if m not in cfg["methods"]:
                    msgs.append(f"config key '{key}.{field}': unknown method '{m}'{suggest(m, cfg['methods'])}")
        for b in f.get("benchmarks", []):
            if b not in cfg["benchmarks"]:
                msgs.append(f"config key '{key}.benchmarks': unknown benchmark '{b}'{suggest(b, cfg['benchmarks'])}")
            elif "metric" in f and f["metric"] not in metric_names(cfg, b):
                msgs.append(f"config key '{key}.metric': benchmark '{b}' has no metric '{f['metric']}'; it has "
                            f"{sorted(metric_names(cfg, b))}")
            elif fig in CURVE_FIGURES and cfg["benchmarks"][b]["kind"] != "math":
                msgs.append(f"config key '{key}.benchmarks': pass@k curves need sampled math benchmarks, "
                            f"'{b}' is {cfg['benchmarks'][b]['kind']}")
        if fig == "fig6b" and f["method"] in cfg["methods"] and cfg["methods"][f["method"]]["rule"] != "mass":
            msgs.append(f"config key '{key}.method': the τ sweep needs a method of rule 'mass', "
                        f"'{f['method']}' has rule '{cfg['methods'][f['method']]['rule']}'")
        if fig == "fig1c" and f["method"] in cfg["methods"] and cfg["methods"][f["method"]]["source"] != "pretrained":
            msgs.append(f"config key '{key}.method': the reference sweep replaces the pretrained source of a method; "
                        f"'{f['method']}' has source '{cfg['methods'][f['method']]['source']}'")
    return msgs


def figure_inputs(cfg: dict, fig: str) -> list[str]:
    """The files a figure of `figures:` is drawn from: metrics (sweeps), grades (pass@k), SFT run dirs (probes)."""
    f, L = cfg["figures"][fig], layout(cfg)
    d, b = f["domain"], f["backbone"]
    if fig in SWEEP_FIGURES:
        methods = [p["method"] for p in sweep_points(cfg, fig)] + ([f["baseline"]] if f.get("baseline") else [])
        return [L.metrics(d, b, m, bench) for m in dict.fromkeys(methods) for bench in f["benchmarks"]]
    if fig in CURVE_FIGURES:
        return [L.grades(d, b, m, key) for m in f["methods"] for key, _ in curve_benchmarks(cfg, fig).values()]
    return [L.sft_final(d, b, m) for m in f["methods"]]
