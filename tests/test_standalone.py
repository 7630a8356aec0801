"""A clone stands alone: the paper's evaluation files ship in data/ (with their sources, licences and checksums), and
the paper config's dry run and the preparation of every one of its benchmarks work from a copy of the repository with
nothing beside it. (CI's clone has a `shared/` folder beside it, so the runs below happen in a copy elsewhere.)"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prift import config as C
from prift import preflight
from tests.conftest import DATA, REPO

PAPER = "config/config.yaml"
# every benchmark of the paper config and the number of problems its file holds
COUNTS = {"math500": 500, "minerva_math": 272, "olympiadbench": 675, "aime24": 30, "amc23": 40,
          "humaneval_plus": 164, "mbpp_plus": 378, "medqa": 1273, "mmlu_medical": 2739, "medmcqa": 4183}
# read from the Hugging Face hub by design (prift fetch copies them for offline nodes): not prepared here
HUB_ONLY = {"lcb_v5", "lcb_v6"}


def _repo_files() -> list[str]:
    """The files a commit of this working tree holds: tracked ones and new ones git does not ignore."""
    p = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                       capture_output=True, check=True)
    return [f for f in p.stdout.decode().split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A copy of the repository in a fresh directory that holds nothing else (no `shared/` beside it)."""
    root = tmp_path_factory.mktemp("standalone")
    dst = root / "prift"
    for f in _repo_files():
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst / f)
    assert sorted(p.name for p in root.iterdir()) == ["prift"]
    return dst


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """A Python process in `cwd` that imports prift from there (not from the installed checkout)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_no_file_points_outside_the_repository():
    """No config, test, Makefile, script or document reads or names the old data folder beside the clone."""
    pattern = re.compile(r"\.\./shared\b|/ *\"shared\" */")
    me = Path(__file__).resolve().relative_to(REPO).as_posix()
    hits = []
    for f in _repo_files():
        if f == me or f.startswith("data/"):
            continue
        try:
            text = (REPO / f).read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{f}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_paper_config_reads_only_files_inside_the_repository():
    """Every local `path:` of the paper config lies inside the repository, exists, and is a checksummed data file."""
    cfg = C.load(REPO / PAPER)
    sums = _checksums()
    paths = {key: e["path"] for key, e in preflight.dataset_entries(cfg) if e.get("path")}
    assert {k.split(".")[1].split("@")[0] for k in paths} == set(COUNTS)   # (@: a figure's sweep of a benchmark)
    for key, path in paths.items():
        p = (REPO / path).resolve()
        assert not Path(path).is_absolute() and p.is_relative_to(REPO) and p.is_file(), (key, path)
        assert p.relative_to(DATA).as_posix() in sums, f"{key}: {path} is not in data/SHA256SUMS"
    assert {b for b, spec in cfg["benchmarks"].items() if "hub" in spec["data"]} == HUB_ONLY


def _checksums() -> dict[str, str]:
    lines = (DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(None, 1) for line in lines if line.strip())}


def test_shipped_data_match_their_checksums_and_name_their_sources():
    """data/SHA256SUMS covers every data file, each matches it, and the SOURCES.md that covers a file (in its folder
    or the nearest one above) names it and states a licence."""
    sums = _checksums()
    files = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()
                   and p.name != "SHA256SUMS" and not p.name.endswith(".md") and not p.name.startswith("LICENSE"))
    assert files == sorted(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
        folder = (DATA / name).parent
        while not (folder / "SOURCES.md").exists():
            assert folder != DATA, f"{name}: no SOURCES.md in its folder or above"
            folder = folder.parent
        sources = (folder / "SOURCES.md").read_text()
        first = (DATA / name).relative_to(folder).parts[0]   # the file, or its benchmark's folder
        assert first in sources and re.search(r"(?i)licen[cs]e", sources), (name, folder / "SOURCES.md")
    # the non-commercial terms are stated where they apply
    assert "non-commercial" in (DATA / "math" / "SOURCES.md").read_text()
    assert "CC BY-NC-SA" in (DATA / "README.md").read_text()


def test_paper_config_dry_run_in_a_copy_with_nothing_beside_it(clone):
    """`snakemake -n` on the paper's config (every table and figure) from the copy: preflight finds every local file,
    and every benchmark's preparation is planned."""
    p = _run(["-m", "snakemake", "-n", "--cores", "1"], clone)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    out = p.stdout + p.stderr
    prepared = set(re.findall(r"output: results/data/benchmarks/([^/@]+?)(?:@[^/]*)?\.jsonl", out))
    cfg = C.load(REPO / PAPER)
    # (mcq benchmarks have no prepare step: grade_mcq reads their files)
    assert prepared == {b.split("@")[0] for b, spec in cfg["benchmarks"].items() if spec["kind"] != "mcq"}


PREPARE_ALL = """
import json, sys
from pathlib import Path
import prift
from prift import config as C, mcq
from prift.cli import main
assert Path(prift.__file__).resolve().is_relative_to(Path.cwd().resolve()), prift.__file__
cfg = C.load("config/config.yaml")
counts = {}
for name, bench in cfg["benchmarks"].items():
    if "hub" in bench["data"] or "@" in name:   # @: a figure's sweep of a benchmark
        continue
    if bench["kind"] == "mcq":   # no prepare step: grade_mcq hands the file to lm-eval's task, loaded here the same way
        task = mcq.MCQ_FORMATS[bench["format"]]["task"]
        tasks = mcq.task_manager(mcq.task_dir({bench["format"]: bench["data"]["path"]},
                                              f"tasks-{name}")).load([task])["tasks"]
        counts[name] = len(list(tasks[task].test_docs()))
        continue
    out = Path("prepared") / f"{name}.jsonl"
    assert main(["prepare", "--config", "config/config.yaml", "--benchmark", name, "--out", str(out)]) == 0, name
    counts[name] = sum(1 for line in out.read_text().splitlines() if line.strip())
print("COUNTS " + json.dumps(counts))
"""


def test_every_benchmark_of_the_paper_config_prepares_in_the_copy(clone):
    """`prift prepare --benchmark` for every math and code benchmark of the paper config, and lm-eval's task for every
    medical one, from the copy: all problems of each file (LiveCodeBench reads the hub: HUB_ONLY)."""
    p = _run(["-c", PREPARE_ALL], clone)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    counts = json.loads(p.stdout.split("COUNTS ", 1)[1].splitlines()[0])
    assert counts == COUNTS
