"""The floors of DESIGN.md hold: lower modules never import higher ones (at module level or inside a function),
the ground floor imports no other prift module, and validating a config imports neither torch nor TRL (Snakemake
parses the DAG with it)."""
from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

# floor of each module of prift/ (a package counts as one module, but for the submodules named here); a module may
# import its own floor and below
FLOORS = {
    0: {"metrics", "io", "startup"},
    1: {"rules", "weighting", "packing", "demo_data"},
    2: {"methods", "recipes", "tables.specs"},
    3: {"config", "crossrefs", "sweeps", "seeds", "paths", "preflight", "data", "resources"},
    4: {"grading", "sandbox", "evalplus_judge"},
    5: {"benchmarks", "codeeval", "livecodebench", "lcb_judge", "mcq"},   # the kinds and their harnesses (evalplus, LCB, lm-eval)
    6: {"runs", "backbone", "analysis"},
    7: {"scoring", "losses", "sft", "dapo", "rl", "generate", "figures", "tables", "costs", "fetch", "summary",
        "frontpage"},
    8: {"cli"},
}
FLOOR = {m: f for f, ms in FLOORS.items() for m in ms}


def _unit(dotted: str) -> str:
    """The floor unit of a module path below prift: a submodule with a floor of its own, else its top package."""
    parts = dotted.split(".")
    return ".".join(parts[:2]) if ".".join(parts[:2]) in FLOOR else parts[0]


def _prift_imports(path) -> set[str]:
    """The prift modules a file imports, anywhere in it (module level and function bodies)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prift":
            rest = node.module.split(".", 1)[1] if "." in node.module else ""
            out.update([_unit(rest)] if rest else (_unit(a.name) for a in node.names))  # from prift import x, y
        elif isinstance(node, ast.Import):
            out.update(_unit(a.name.split(".", 1)[1]) for a in node.names if a.name.startswith("prift."))
    return out


def _modules():
    for p in sorted((REPO / "prift").rglob("*.py")):
        rel = p.relative_to(REPO / "prift").with_suffix("")
        yield _unit(".".join(rel.parts)), p


def test_every_module_has_a_floor():
    names = {m for m, _ in _modules()} - {"__init__"}
    assert names <= set(FLOOR), sorted(names - set(FLOOR))


# upward imports tolerated for now, each with the reason it has not moved yet (none left)
KNOWN: set[tuple[str, str]] = set()


def test_nothing_imports_upward():
    upward = []
    for mod, path in _modules():
        if mod == "__init__":
            continue
        for dep in _prift_imports(path) - {mod}:
            if FLOOR.get(dep, 99) > FLOOR[mod] and (mod, dep) not in KNOWN:
                upward.append(f"{path.relative_to(REPO)} (floor {FLOOR[mod]}) imports prift.{dep} "
                              f"(floor {FLOOR.get(dep)})")
    assert not upward, "\n".join(upward)


def test_the_ground_floor_imports_no_prift_module():
    for mod, path in _modules():
        if FLOOR.get(mod) == 0:
            assert not _prift_imports(path) - {mod}, path


def test_validating_a_config_imports_neither_torch_nor_trl():
    """Nor pandas: every job validates its config (prift.tables' names are imported on first use)."""
    code = ("import sys; from prift import config as C; C.load('config/config.yaml'); C.load('config/demo.yaml'); "
            "print(sorted(m for m in ('torch', 'trl', 'transformers', 'datasets', 'vllm', 'pandas') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"
