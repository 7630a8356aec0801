"""The run layout said once (prift.paths): the paths it gives, the parts it parses back, the package and the Snakemake
rules reading it rather than spelling paths, and `snakemake --lint` finding nothing to say about the rules."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prift import config as C
from prift import paths as P
from tests.conftest import REPO


def test_layout_of_a_results_tree():
    L = P.Layout("out/")
    assert L.root == "out" and P.Layout("./out").root == "out"
    assert L.train("math") == "out/data/math/train.jsonl" and L.rl_prompts("math") == "out/data/math/rl_prompts.jsonl"
    assert L.problems("aime24") == "out/data/benchmarks/aime24.jsonl"
    assert L.scores("ref", "student", "math") == "out/scores/ref/student/math.safetensors"
    assert L.sft_final("math", "tiny", "dft") == "out/sft/math/tiny/dft/final"
    assert L.rl_final("math", "tiny", "sft") == "out/rl/math/tiny/sft/final"
    assert L.grades("math", "tiny", "dft", "aime24") == "out/grades/math/tiny/dft/aime24.jsonl"
    assert L.metrics("math", "tiny", "dft", "aime24") == "out/metrics/math/tiny/dft/aime24.json"
    assert [L.table("t3", "csv", part) for part in P.TABLE_PARTS] == [
        "out/tables/t3.csv", "out/tables/t3_paired.csv", "out/tables/t3_vs_paper.csv"]
    assert L.figure("fig1c", "png") == "out/figures/fig1c.png" and L.figure_stem("fig1c") == "out/figures/fig1c"
    assert L.table_figure("t3", "fig1a", "pdf") == "out/figures/t3/fig1a.pdf"
    assert L.log("prepare", "math.rl_prompts") == "out/logs/prepare/math.rl_prompts.log"
    assert L.timing("sft", "math", "tiny", "dft") == "out/benchmarks/sft/math/tiny/dft.tsv"
    assert L.timed_output("sft", ("math", "tiny", "dft")) == L.sft_dir("math", "tiny", "dft")
    assert L.timed_output("table", ("t3",)) is None
    # wildcard patterns for the rules
    assert L.samples("{domain}", "{backbone}", "{method}", "{benchmark}") == \
        "out/samples/{domain}/{backbone}/{method}/{benchmark}.jsonl"
    with pytest.raises(ValueError, match="table part"):
        L.table("t3", "csv", "_other")


def test_parts_of_a_path_are_parsed_back_here_only():
    L = P.Layout("/abs/results")
    run = ("math@ref2000", "llama-2-7b+dft@8000", "prift-prob@ref=sft4000")
    assert P.split_run_id(P.run_id(*run)) == run
    assert P.parse_eval(L.grades(*run, "math500@n=64")) == (*run, "math500@n=64")
    assert P.parse_eval(L.metrics(*run, "aime24")) == (*run, "aime24")
    final = L.sft_final(*run)
    assert P.parse_run(final) == P.parse_run(P.probes_in(final)) == run
    assert P.checkpoints_beside(final) == Path(L.sft_dir(*run), "checkpoints")
    assert P.probes_beside(final) == Path(L.sft_dir(*run), "probes.jsonl")
    for bad, parse in (("math/tiny", P.split_run_id), ("math/tiny/dft/x", P.split_run_id), ("dft/model", P.parse_run)):
        with pytest.raises(ValueError):
            parse(bad)


def test_the_package_reads_the_layout():
    cfg = C.validate(yaml.safe_load((REPO / "config" / "demo.yaml").read_text()))
    L = C.layout(cfg)
    assert C.model_dir(cfg, "math", "tiny", "dft") == L.sft_final("math", "tiny", "dft")
    assert C.model_dir(cfg, "math", "tiny", "sft+rl") == L.rl_final("math", "tiny", "sft")
    assert C.model_dir(cfg, "math", "tiny", "original") == C.backbone_path(cfg, "tiny") == L.backbone("tiny")


# results-tree folders: a string literal starting with one of them (or with it after a "/") inside a rule file is a
# path spelled outside prift.paths (report/ is left out: the captions live in workflow/report/)
LAYOUT_FOLDERS = ("backbones", "data", "scores", "sft", "rl", "samples", "grades", "metrics", "tables", "figures",
                  "logs", "benchmarks", ".config")


def test_rules_spell_no_paths_of_the_results_tree():
    snakefiles = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    spelled = re.compile(r"""["'](?:[^"'\n]*/)?(?:%s)/""" % "|".join(map(re.escape, LAYOUT_FOLDERS)))
    found = [f"{f.relative_to(REPO)}:{i}: {line.strip()}" for f in snakefiles
             for i, line in enumerate(f.read_text().splitlines(), 1)
             if spelled.search(line) and not line.lstrip().startswith("#")]
    assert not found, "\n".join(found)
    assert not any("RESULTS" in f.read_text() for f in snakefiles)


@pytest.mark.parametrize("config", ["demo.yaml", "config.yaml"])
def test_snakemake_lint_is_clean(config):
    """Every rule has a log, a software environment and its paths and commands as input/output/params; no function
    beside rules in one file; no path built with `+` (snakemake --lint exits non-zero on any lint)."""
    p = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile", f"config/{config}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
