"""The cost of each stage, from Snakemake's `benchmark:` files: jobs, wall time, max RSS, GPU-hours and disk per stage.

A benchmark file is a TSV written by Snakemake for one job (one line per repeat; columns s, h:m:s, max_rss, ...;
memory in MB, "NA" where the platform does not measure it). Its stage is the first folder under the benchmarks root
(prift.paths.Layout.timing: <results>/benchmarks/<rule>/...), i.e. the rule. GPU-hours = wall hours × the GPUs one
job of the stage requests. Disk: what a job's output holds now (prift.paths.Layout.timed_output: a directory - a run,
with any trainer checkpoints kept beside its final model - or the files of that stem), summed over the stage's jobs.
Tokens: what a job's output says it processed (`job_tokens`): SFT and RL the run's `tokens` (prift_run.json: SFT's
real input tokens, RL's prompt + completion tokens as TRL counts them), the reference pass its input tokens (the
cache's provenance), sampling the completion tokens of its samples; tokens_per_s = the stage's tokens / the wall
time of the jobs that report tokens.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from prift.paths import FINAL, Layout

COLUMNS = ("stage", "jobs", "wall_h", "longest_job_h", "max_rss_mb", "gpus_per_job", "gpu_hours", "disk_gb", "tokens",
           "tokens_per_s")
TOTAL = "total"
TOKEN_STAGES = ("sft", "rl", "score", "generate")   # the stages whose outputs count their tokens (job_tokens)


def read_benchmark(path: Path | str) -> tuple[float, float]:
    """(wall seconds summed over the file's repeats, max RSS in MB or NaN) of one benchmark TSV."""
    frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    if "s" not in frame or frame.empty:
        raise ValueError(f"{path}: not a Snakemake benchmark file (needs a column 's' and one line per repeat)")
    wall = pd.to_numeric(frame["s"], errors="coerce")
    if wall.isna().any():
        raise ValueError(f"{path}: column 's' holds non-numbers")
    rss = pd.to_numeric(frame["max_rss"], errors="coerce") if "max_rss" in frame else pd.Series([math.nan])
    return float(wall.sum()), float(rss.max()) if rss.notna().any() else math.nan


def stage_of(path: Path | str, root: Path | str) -> str:
    rel = Path(path).resolve().relative_to(Path(root).resolve())
    if len(rel.parts) < 2:
        raise ValueError(f"{path}: expected <benchmarks root>/<stage>/.../<job>.tsv")
    return rel.parts[0]


def gpus_of_job(path: Path | str, root: Path | str, gpus: Mapping[str, float]) -> float:
    """The GPUs of one job: gpus['<stage>/<part>'] for the first folder or file stem below the stage that has an
    entry (the backbone: benchmarks/sft/<domain>/<backbone>/<method>.tsv), else gpus['<stage>'], else 0."""
    rel = Path(path).resolve().relative_to(Path(root).resolve())
    stage = stage_of(path, root)
    for part in [*rel.parts[1:-1], rel.stem]:
        if f"{stage}/{part}" in gpus:
            return float(gpus[f"{stage}/{part}"])
    return float(gpus.get(stage, 0))


def _job_output(path: Path | str, root: Path | str, results: Path | str) -> Path | None:
    stage = stage_of(path, root)
    rel = Path(path).resolve().relative_to(Path(root).resolve() / stage).with_suffix("")
    out = Layout(results).timed_output(stage, rel.parts)
    return None if out is None else Path(out)


def job_tokens(path: Path | str, root: Path | str, results: Path | str) -> float:
    """Tokens the job timed by benchmark file `path` processed, from its output (see the module doc); NaN for the
    stages that count none (grading, metrics, tables) and for an output that holds no count."""
    stage = stage_of(path, root)
    if stage not in TOKEN_STAGES:
        return math.nan
    out = _job_output(path, root, results)
    tokens = None
    if stage in ("sft", "rl"):
        run = out / FINAL / "prift_run.json"
        tokens = json.loads(run.read_text()).get("tokens") if run.is_file() else None
    elif stage == "score" and (f := out.with_name(out.name + ".safetensors")).is_file():
        from safetensors import safe_open
        with safe_open(str(f), framework="numpy") as s:
            tokens = json.loads((s.metadata() or {}).get("input_tokens", "null"))
    elif stage == "generate" and (f := out.with_name(out.name + ".jsonl")).is_file():
        with open(f, encoding="utf-8") as lines:
            counts = [json.loads(line).get("completion_tokens") for line in lines if line.strip()]
        tokens = sum(counts) if counts and None not in counts else None
    return float(tokens) if tokens is not None else math.nan


def job_disk_bytes(path: Path | str, root: Path | str, results: Path | str) -> float:
    """Bytes a job's output holds now (see the module doc); NaN for a stage whose outputs are not tracked."""
    out = _job_output(path, root, results)
    if out is None:
        return math.nan
    if out.is_dir():
        return float(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()))
    return float(sum(f.stat().st_size for f in out.parent.glob(out.name + ".*") if f.is_file()))


def aggregate(paths: Iterable[Path | str], root: Path | str, gpus: Mapping[str, float],
              results: Path | str | None = None) -> pd.DataFrame:
    """One row per stage (sorted by name) and a final 'total' row. GPU-hours are summed per job (wall hours × that
    job's GPUs, see gpus_of_job); gpus_per_job lists the distinct requests of the stage ('1/4' when they differ);
    disk_gb (with `results`, the results root) sums what the stage's jobs' outputs hold."""
    per_stage: dict[str, list[tuple[float, float, float, float, float]]] = {}
    for p in sorted(map(str, paths)):
        disk = job_disk_bytes(p, root, results) if results is not None else math.nan
        tokens = job_tokens(p, root, results) if results is not None else math.nan
        per_stage.setdefault(stage_of(p, root), []).append((*read_benchmark(p), gpus_of_job(p, root, gpus), disk,
                                                             tokens))
    rows = []
    for stage, jobs in sorted(per_stage.items()):
        walls = [j[0] for j in jobs]
        rss = [j[1] for j in jobs if not math.isnan(j[1])]
        disks = [j[3] for j in jobs if not math.isnan(j[3])]
        counted = [(j[0], j[4]) for j in jobs if not math.isnan(j[4])]
        tokens = sum(t for _, t in counted) if counted else math.nan
        wall = sum(w for w, _ in counted)
        rows.append({"stage": stage, "jobs": len(jobs), "wall_h": sum(walls) / 3600,
                     "longest_job_h": max(walls) / 3600, "max_rss_mb": max(rss) if rss else math.nan,
                     "gpus_per_job": "/".join(f"{g:g}" for g in sorted({j[2] for j in jobs})),
                     "gpu_hours": sum(j[0] * j[2] for j in jobs) / 3600,
                     "disk_gb": sum(disks) / 1e9 if disks else math.nan, "tokens": tokens,
                     "tokens_per_s": tokens / wall if counted and wall > 0 else math.nan})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if len(frame):
        total = {"stage": TOTAL, "jobs": frame.jobs.sum(), "wall_h": frame.wall_h.sum(),
                 "longest_job_h": frame.longest_job_h.max(), "max_rss_mb": frame.max_rss_mb.max(),
                 "gpus_per_job": "", "gpu_hours": frame.gpu_hours.sum(),
                 "disk_gb": frame.disk_gb.sum(min_count=1), "tokens": frame.tokens.sum(min_count=1),
                 "tokens_per_s": math.nan}
        frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    return frame


def to_csv_text(frame: pd.DataFrame) -> str:
    """Hours with 4 decimals, MB and GPUs as integers, '' where unknown."""
    def fmt(v, spec):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    shown = pd.DataFrame({
        "stage": frame.stage, "jobs": [fmt(int(v), "d") for v in frame.jobs],
        **{k: [fmt(float(v), ".4f") for v in frame[k]] for k in ("wall_h", "longest_job_h")},
        "max_rss_mb": [fmt(float(v), ".0f") for v in frame.max_rss_mb],
        "gpus_per_job": list(frame.gpus_per_job),
        "gpu_hours": [fmt(float(v), ".4f") for v in frame.gpu_hours],
        "disk_gb": [fmt(float(v), ".4f") for v in frame.disk_gb],
        "tokens": [fmt(float(v), ".0f") for v in frame.tokens],
        "tokens_per_s": [fmt(float(v), ".1f") for v in frame.tokens_per_s]}, columns=list(COLUMNS))
    buf = io.StringIO()
    shown.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def parse_gpus(items: Iterable[str]) -> dict[str, float]:
    """['sft=4', 'sft/qwen3-8b-base=4', 'score=1'] → {'sft': 4.0, 'sft/qwen3-8b-base': 4.0, 'score': 1.0}."""
    out = {}
    for item in items:
        stage, sep, n = item.partition("=")
        try:
            out[stage] = float(n)
        except ValueError:
            sep = ""
        if not sep or not stage:
            raise ValueError(f"--gpus: expected STAGE=N, got {item!r}")
    return out
