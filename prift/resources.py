"""What a job asks the cluster for: the table in workflow/profiles/default/resources.yaml, by backbone size.

The table gives, per stage (= Snakemake rule), a value per resource, either one number for every backbone or one per
size tier ({small: ..., medium: ..., large: ...}); a backbone's tier is the first whose bound (billions of
parameters) is at least its `size_b`. Resources listed under `scale_with_attempt` grow with Snakemake's attempt
counter (a job resubmitted after a time limit gets more time). Pure functions; Snakemake wiring is in
workflow/rules/common.smk (stage_resources). :func:`allocated_cpus` is the other side: what a running job was given.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

TABLE = Path(__file__).resolve().parent.parent / "workflow" / "profiles" / "default" / "resources.yaml"


class ResourceError(ValueError):
    pass


def load(path: str | Path = TABLE) -> dict:
    """Read and check the table; errors name the file and the entry."""
    path = Path(path)
    table = yaml.safe_load(path.read_text())
    for key in ("tiers", "default", "stages"):
        if not isinstance(table.get(key), dict):
            raise ResourceError(f"{path}: missing mapping {key!r}")
    tiers = table["tiers"]
    if not tiers or not math.isinf(max(float(b) for b in tiers.values())):
        raise ResourceError(f"{path}: tiers must include an unbounded one (.inf), got {tiers}")
    table["tiers"] = dict(sorted(tiers.items(), key=lambda kv: float(kv[1])))  # smallest bound first
    for stage, spec in {"default": table["default"], **table["stages"]}.items():
        for res, val in spec.items():
            if res == "scale_with_attempt":
                unknown = set(val) - set(spec)
                if unknown:
                    raise ResourceError(f"{path}: stages.{stage}.scale_with_attempt names {sorted(unknown)}, "
                                        f"which {stage} does not request")
            elif isinstance(val, dict) and set(val) != set(tiers):
                raise ResourceError(f"{path}: stages.{stage}.{res} must give a value for each tier {list(tiers)}, "
                                    f"got {sorted(val)}")
    return table


def tier_of(table: dict, size_b: float | None) -> str:
    """The tier of a backbone of size_b billion parameters (None or 0: the smallest); load() sorts the tiers."""
    size = float(size_b or 0.0)
    for name, bound in table["tiers"].items():
        if size <= float(bound):
            return name
    raise AssertionError("the last tier is unbounded")


def request(table: dict, stage: str, size_b: float | None = None, attempt: int = 1) -> dict:
    """{resource: value} for one job of `stage` on a backbone of `size_b` billion parameters."""
    spec = table["stages"].get(stage, table["default"])
    tier = tier_of(table, size_b)
    scaled = set(spec.get("scale_with_attempt", ()))
    out = {}
    for res, val in spec.items():
        if res == "scale_with_attempt":
            continue
        v = val[tier] if isinstance(val, dict) else val
        out[res] = v * attempt if res in scaled else v
    return out


def allocated_cpus(environ=None) -> int:
    """CPUs this process may use: its CPU affinity mask (what SLURM's task binding or cgroup grants, unlike
    ``os.cpu_count()``, the node's cores), capped by ``SLURM_CPUS_PER_TASK`` when SLURM sets it. At least 1. Every
    worker pool of a job (code grading's sandboxed programs) is sized from this."""
    env = os.environ if environ is None else environ
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # no affinity API (macOS)
        n = os.cpu_count() or 1
    slurm = str(env.get("SLURM_CPUS_PER_TASK", "")).strip()
    if slurm.isdigit() and int(slurm) > 0:
        n = min(n, int(slurm))
    return max(1, n)
