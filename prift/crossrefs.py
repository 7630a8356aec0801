"""The cross-references of a config that its schema cannot express (methods, references and their tokenizers,
tables, benchmarks' kind-specific keys, the `rl:` section), each problem one line naming its config key; called by
prift.config.validate before any job runs.
"""
from __future__ import annotations

from prift.config import ORIGINAL, RL_SUFFIX, rl_init, sft_runs, suggest

# The benchmark entry keys only some kinds read (prift.benchmarks.KINDS: a kind's `formats` and `reads`; the schema
# says which formats each kind has).
BENCHMARK_KIND_KEYS = {"format": ("math", "evalplus", "mcq"), "chat": ("evalplus",),
                       "version": ("livecodebench",), "timeout": ("livecodebench",)}


def check_references(cfg: dict) -> list[str]:
    """Cross-references the schema cannot express."""
    from prift.methods import check_method
    msgs = []
    for name, m in cfg["methods"].items():
        msgs += check_method(name, m)
        if m.get("reference") is not None and m["reference"] not in cfg["backbones"]:
            msgs.append(f"config key 'methods.{name}.reference': unknown backbone '{m['reference']}'"
                        f"{suggest(m['reference'], cfg['backbones'])}")
    for d, dom in cfg["domains"].items():
        if d not in cfg["training"]:
            msgs.append(f"config key 'training.{d}': missing recipe for domain '{d}'")
        for b in dom["benchmarks"]:
            if b not in cfg["benchmarks"]:
                msgs.append(f"config key 'domains.{d}.benchmarks': unknown benchmark '{b}'"
                            f"{suggest(b, cfg['benchmarks'])}")
    for name, b in cfg["benchmarks"].items():
        # keys that only some kinds read: given elsewhere they would be silently ignored
        for key, kinds in BENCHMARK_KIND_KEYS.items():
            if key in b and b["kind"] not in kinds:
                msgs.append(f"config key 'benchmarks.{name}.{key}': only read for kind "
                            f"{' or '.join(repr(k) for k in kinds)}, not '{b['kind']}'")
        if "generation" in b and b["kind"] == "mcq":
            msgs.append(f"config key 'benchmarks.{name}.generation': kind 'mcq' samples nothing (lm-eval scores "
                        f"the option letters)")
    msgs += _check_rl(cfg)
    for t in (cfg.get("analysis") or {}).get("tables", []):
        if t not in cfg["tables"]:
            msgs.append(f"config key 'analysis.tables': unknown table '{t}'{suggest(t, cfg['tables'])}")
    main = (cfg.get("report") or {}).get("main_table")
    if main is not None and main not in cfg["tables"]:
        msgs.append(f"config key 'report.main_table': unknown table '{main}'{suggest(main, cfg['tables'])}")
    for t, spec in cfg["tables"].items():
        if spec["domain"] not in cfg["domains"]:
            msgs.append(f"config key 'tables.{t}.domain': unknown domain '{spec['domain']}'"
                        f"{suggest(spec['domain'], cfg['domains'])}")
        for field, known in (("backbones", cfg["backbones"]), ("benchmarks", cfg["benchmarks"])):
            for x in spec[field]:
                if x not in known:
                    msgs.append(f"config key 'tables.{t}.{field}': unknown {field[:-1]} '{x}'{suggest(x, known)}")
        methods = spec["methods"]
        known = {**cfg["methods"], ORIGINAL: 1, **{f"{m}{RL_SUFFIX}": 1 for m in (cfg.get("rl") or {}).get("inits", [])}}
        if isinstance(methods, dict):
            for b in sorted(set(methods) ^ set(spec["backbones"])):
                what = (f"'{b}' is not one of the table's backbones{suggest(b, spec['backbones'])}" if b in methods
                        else f"no methods for backbone '{b}'")
                msgs.append(f"config key 'tables.{t}.methods': {what} (a per-backbone mapping has one key per "
                            f"backbone of the table)")
            lists = [(f"methods.{b}", ms) for b, ms in methods.items()]
        else:
            lists = [("methods", methods)]
        for key, ms in lists:
            for x in ms:
                if rl_init(x) is not None and x not in known:
                    msgs.append(f"config key 'tables.{t}.{key}': RL run '{x}' needs its init '{rl_init(x)}' in "
                                f"'rl.inits' (config section `rl:`)")
                elif x not in known:
                    msgs.append(f"config key 'tables.{t}.{key}': unknown method '{x}'{suggest(x, known)}")
            bbs = spec["backbones"] if key == "methods" else [key.split(".", 1)[1]]
            for b in bbs:
                if any(rl_init(x) for x in ms) and b not in (cfg.get("rl") or {}).get("backbones", {}):
                    msgs.append(f"config key 'tables.{t}.{key}': RL runs on backbone '{b}' need it in 'rl.backbones'")
        shown = {x for _, ms in lists for x in ms}
        for field in ("methods", "baselines"):
            for x in (spec.get("paired") or {}).get(field, []):
                if x not in shown:
                    msgs.append(f"config key 'tables.{t}.paired.{field}': '{x}' is not a method of the table"
                                f"{suggest(x, shown)}")
    return msgs


def tokenizer_family(cfg: dict, backbone: str) -> str | None:
    """The declared tokenizer family of a backbone (`tokenizer:`); a fine-tuned run's weights (`run:`, Fig. 1c's
    references) have the family of the backbone they were trained from."""
    b = cfg["backbones"].get(backbone) or {}
    if b.get("tokenizer"):
        return b["tokenizer"]
    return tokenizer_family(cfg, b["run"]["backbone"]) if b.get("run") else None


def _trained_from(cfg: dict, backbone: str) -> str:
    b = cfg["backbones"].get(backbone) or {}
    return _trained_from(cfg, b["run"]["backbone"]) if b.get("run") else backbone


def check_reference_tokenizers(cfg: dict) -> list[str]:
    """A reference (or KD teacher) that is not the trained backbone itself scores that backbone's tokens (Tables 7,
    8; Fig. 1c): only possible within one tokenizer family. Checked from the families the config declares
    (`backbones.<b>.tokenizer`), since the DAG is parsed without loading any model; `prift score` then checks the two
    vocabularies token by token."""
    msgs = []
    for _, b, m in sft_runs(cfg):
        spec = cfg["methods"].get(m)
        ref = spec.get("reference") if spec and spec["source"] == "reference" else None
        if ref is None or ref == b or ref not in cfg["backbones"] or _trained_from(cfg, ref) == _trained_from(cfg, b):
            continue
        fr, fb = tokenizer_family(cfg, ref), tokenizer_family(cfg, b)
        if fr is None or fb is None:
            missing = [x for x, f in ((ref, fr), (b, fb)) if f is None]
            msgs.append(f"config key 'methods.{m}.reference': reference '{ref}' scores the tokens of backbone '{b}'; "
                        f"declare the tokenizer family of {' and '.join(repr(x) for x in missing)} "
                        f"(backbones.<name>.tokenizer, e.g. qwen2.5) so that this can be checked before any job")
        elif fr != fb:
            msgs.append(f"config key 'methods.{m}.reference': reference '{ref}' (tokenizer {fr}) cannot score the "
                        f"tokens of backbone '{b}' (tokenizer {fb}): a cross-model reference needs the student's "
                        f"tokenizer family")
    return msgs


def _check_rl(cfg: dict) -> list[str]:
    """The `rl:` section: inits are fine-tuning methods, backbones are known, and the recipe (with each backbone's
    overrides) is a valid prift.recipes.RLRecipe."""
    rl = cfg.get("rl")
    if not rl:
        return []
    msgs = []
    for m in rl["inits"]:
        if m not in cfg["methods"]:
            msgs.append(f"config key 'rl.inits': unknown method '{m}'{suggest(m, cfg['methods'])} (an init is the "
                        f"SFT checkpoint of a method of `methods:`)")
    for b, over in rl["backbones"].items():
        if b not in cfg["backbones"]:
            msgs.append(f"config key 'rl.backbones': unknown backbone '{b}'{suggest(b, cfg['backbones'])}")
            continue
        from prift.recipes import RLRecipe
        try:
            RLRecipe.from_config(rl.get("recipe") or {}, over or {})
        except (TypeError, ValueError) as e:
            msgs.append(f"config key 'rl.backbones.{b}' (rl.recipe with its overrides): {e}")
    return msgs
