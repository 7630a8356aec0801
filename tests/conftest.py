"""Shared fixtures: the real evaluation data shipped in data/, one tiny backbone built once per session, and pdflatex."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# One OpenMP thread per process (before torch is imported): tests start Snakemake jobs and subprocesses side by side
# on small machines, where oversubscribed threads make the tiny models ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"   # the benchmarks' real evaluation files, shipped with the repository (data/README.md)


# The files that take longest, longest first (from `make test`'s --durations): `make test` runs the tests in two
# pytest-xdist workers, one file at a time per worker (--dist loadfile, so a file's module fixtures are built once),
# handing out files in collection order; starting with the long ones lets both workers finish together. The other
# files keep pytest's order. A stale list only costs time, never a test.
LONGEST_FIRST = ("test_pipeline.py", "test_slurm.py", "test_kd_crossmodel_dag.py", "test_generate_vllm_cpu.py",
                 "test_code_eval.py", "test_readme_rule.py", "test_figures.py", "test_report.py", "test_fsdp_cpu.py",
                 "test_smollm2.py", "test_sft_train.py", "test_fetch.py", "test_standalone.py", "test_config.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: the rest keep their order


@pytest.fixture(scope="session")
def eval_data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A tiny Qwen2 backbone (tokenizer + model) pre-trained for a few steps on the demo corpus (~10 s)."""
    from prift.backbone import build_tiny
    from prift.demo_data import demo_math
    out = tmp_path_factory.mktemp("backbone") / "tiny"
    # 1,024 positions: the code harnesses' prompts (evalplus, LiveCodeBench) need more than the demo's 512
    build_tiny(out, demo_math("pretrain", 1500), pretrain_steps=60, seed=0, max_position_embeddings=1024,
               log=lambda *_: None)
    return out


TEX_SCRIPT = REPO / "scripts" / "install-tex.sh"
# What a document that includes the tables needs: booktabs (rules), multirow (row groups), longtable (the side by side
# with the paper); geometry only to give the wide tables a landscape page here.
TEX_PREAMBLE = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{multirow}\n\\usepackage{longtable}\n"
                "\\usepackage[margin=1cm,landscape]{geometry}\n")


def compile_tables(tex_files, workdir: Path) -> Path:
    """One document with every table file on a page of its own, compiled by pdflatex (stops at the first error, whose
    log the failure shows); returns the PDF."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, f in enumerate(map(Path, tex_files)):
        names.append(f"t{i}-{f.name}")
        shutil.copyfile(f, workdir / names[-1])
    body = "\n".join(f"\\input{{{n}}}\n\\clearpage" for n in names)
    (workdir / "doc.tex").write_text(f"{TEX_PREAMBLE}\\begin{{document}}\n{body}\n\\end{{document}}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=workdir,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    return workdir / "doc.pdf"


@pytest.fixture(scope="session")
def pdflatex():
    """compile_tables, with pdflatex and the tables' LaTeX packages installed from Debian when missing
    (scripts/install-tex.sh: CI runs as root, so the LaTeX tests run there). Skipped only where nothing can be
    installed (no root, no apt-get); a failed installation fails the tests."""
    p = subprocess.run([str(TEX_SCRIPT)], capture_output=True, text=True, timeout=1800)
    reason = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    if p.returncode in (2, 3):
        pytest.skip(reason)
    assert p.returncode == 0, f"scripts/install-tex.sh: {reason}"
    return compile_tables


def render_in_chromium(html: Path, out_dir: Path) -> tuple[str, Path]:
    """(the DOM after the page's scripts ran, a screenshot) of a local HTML file in headless Chromium."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out_dir / 'profile'}", "--virtual-time-budget=10000", "--window-size=1400,2000"]
    url = html.resolve().as_uri()
    dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=300)
    assert dom.returncode == 0, dom.stderr[-2000:]
    png = out_dir / "page.png"
    shot = subprocess.run(["chromium", *flags, f"--screenshot={png}", url], capture_output=True, text=True,
                          timeout=300)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    return dom.stdout, png


@pytest.fixture(scope="session")
def chromium():
    """render_in_chromium, with Debian's Chromium installed when missing (scripts/install-chromium.sh); skipped only
    where nothing can be installed (no root, no apt-get)."""
    p = subprocess.run([str(REPO / "scripts" / "install-chromium.sh")], capture_output=True, text=True, timeout=1800)
    reason = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    if p.returncode in (2, 3):
        pytest.skip(reason)
    assert p.returncode == 0, f"scripts/install-chromium.sh: {reason}"
    return render_in_chromium


def base_like_copy(src: Path, dst: Path) -> Path:
    """A copy of a tiny backbone made to look like a base Qwen checkpoint: its end-of-sequence token is <|endoftext|>
    (tokenizer, config and generation config), while the model, pre-trained on chat turns, ends its answers with
    <|im_end|>, which is then no end of sequence for it."""
    import json
    import shutil
    shutil.copytree(src, dst)
    for name in ("tokenizer_config.json", "config.json", "generation_config.json"):
        cfg = json.loads((dst / name).read_text())
        if "eos_token" in cfg:
            cfg["eos_token"] = "<|endoftext|>"
        if "eos_token_id" in cfg:
            cfg["eos_token_id"] = 0
        (dst / name).write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="session")
def base_like(tiny_backbone, tmp_path_factory) -> Path:
    return base_like_copy(tiny_backbone, tmp_path_factory.mktemp("base_like") / "tiny-base")
