"""Shared fixtures: the real data beside the repository, and one tiny backbone built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# One OpenMP thread per process (before torch is imported): tests start Snakemake jobs and subprocesses side by side
# on small machines, where oversubscribed threads make the tiny models ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A tiny Qwen2 backbone (tokenizer + model) pre-trained for a few steps on the demo corpus (~10 s)."""
    from prift.backbone import build_tiny
    from prift.data import demo_math
    out = tmp_path_factory.mktemp("backbone") / "tiny"
    # 1,024 positions: the code harnesses' prompts (evalplus, LiveCodeBench) need more than the demo's 512
    build_tiny(out, demo_math("pretrain", 1500), pretrain_steps=60, seed=0, max_position_embeddings=1024,
               log=lambda *_: None)
    return out
