"""The README's "Adding a token-weighting rule", done as a new user would from the README alone: its Python block
appended to a copy of prift/rules.py, its YAML lines added to the demo's config, then the demo DAG (reduced) run in
that copy. The new method trains on the cached pretrained statistics and appears in Table 3 beside PriFT."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prift.paths import Layout
from tests.conftest import REPO

pytestmark = pytest.mark.slow

COPIED = ("Snakefile", "workflow", "prift", "config", "profiles", "environment.yml", "environment")


def readme_blocks() -> tuple[str, str]:
    """(the Python block, the YAML block) of the README's section on adding a rule."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Adding a token-weighting rule", 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    config = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return python, config


def user_config(results, readme_yaml: str) -> dict:
    """config/demo.yaml, reduced to Table 3 on one benchmark, with the README's lines: its method entry as written
    and its table listing (`[..., rank-pt]`: the table's methods, then the new one) applied to the demo's table3."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    added = yaml.safe_load(readme_yaml.replace("[..., ", "["))
    cfg["methods"].update(added["methods"])
    cfg["tables"] = {"table3": {**cfg["tables"]["table3"], "benchmarks": ["math500"],
                                "methods": ["prift-prob", *added["tables"]["table3"]["methods"]]}}
    cfg["results"] = str(results)
    cfg["backbones"]["tiny"]["build"].update(pretrain_steps=80)
    cfg["backbones"]["tiny"]["build"]["corpus"]["n"] = 1500
    cfg["domains"]["math"].update(benchmarks=["math500"])
    cfg["domains"]["math"]["train"]["n"] = 96
    cfg["benchmarks"] = {"math500": {**cfg["benchmarks"]["math500"],
                                     "data": {**cfg["benchmarks"]["math500"]["data"], "n": 6}}}
    cfg["training"]["math"].update(epochs=1, global_batch_size=16, per_device_batch_size=8, save_steps=6)
    cfg["generation"]["max_new_tokens"] = 40
    cfg["evaluation"]["n_boot"] = 50
    cfg["analysis"] = {**cfg["analysis"], "every": 0}
    for key in ("rl", "figures"):
        cfg.pop(key, None)
    return cfg


def test_readme_rule_is_one_function_and_config_lines_and_appears_in_table3(tmp_path):
    python, readme_yaml = readme_blocks()
    assert python.startswith("# prift/rules.py\n") and readme_yaml.startswith("# config/config.yaml\n")
    cfg = user_config(tmp_path / "results", readme_yaml)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))

    # without the function, the config alone fails before any job, naming the key
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "methods.rank-pt" in p.stdout + p.stderr and "'rank'" in p.stdout + p.stderr

    # the user's checkout: the README's function appended to prift/rules.py
    mine = tmp_path / "prift-checkout"
    mine.mkdir()
    for name in COPIED:
        src, dst = REPO / name, mine / name
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() else \
            shutil.copy2(src, dst)
    rules = mine / "prift" / "rules.py"
    rules.write_text(rules.read_text() + "\n\n" + python)
    env = {**os.environ, "PYTHONPATH": str(mine)}   # the copy's prift, not the installed one
    table = Layout(tmp_path / "results").table("table3", "csv")
    p = subprocess.run([sys.executable, "-m", "snakemake", str(table), "--cores", "2", "--configfile", str(path)],
                       cwd=mine, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    rows = frame.set_index(frame.columns[1])
    assert {"PriFT-prob", "Rank (pretrained)"} <= set(rows.index), list(rows.index)
    for method in ("PriFT-prob", "Rank (pretrained)"):   # measured cells (the average of one benchmark is "—")
        cells = rows.loc[method, ["MATH-OAI Avg@16", "MATH-OAI P@16"]]
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells), dict(cells)
    # it trained on the cached reference pass (source: pretrained), with the rule's own name in its run summary
    text = (Path(Layout(tmp_path / "results").sft_final("math", "tiny", "rank-pt")) / "prift_run.json").read_text()
    assert '"rule": "rank"' in text and '"source": "pretrained"' in text
