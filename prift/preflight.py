"""Checks of a config against what it points at and of numbers that must agree, before any job runs.

The schema checks each value alone and prift.crossrefs.check_references the names between sections; these checks
read the filesystem or compare numbers across sections, so that a config that cannot run fails at `snakemake -n`
with one line per problem (`config key '<key>': <what>`), not hours later on a compute node:
- every local `path:` exists (datasets, benchmarks, the DAG-built backbones' corpora, RL prompts, Fig. 1c's
  reference data, backbones' local checkpoints);
- the drift probes' held-out examples fit in the training data where its records can be counted here (a local file
  or the demo generator; a hub dataset is counted by `prift prepare`, with the same rule);
- each training recipe's global batch is a multiple of its per-device batch (the GPU count is only known at run
  time: prift.recipes.grad_accum_steps checks the rest);
- Avg@k / Pass@k never ask for more samples (k) than a benchmark draws (n).

Relative paths are resolved against the working directory, as the jobs resolve them (Snakemake runs every job
there; `--directory` moves it). Torch-free, like prift.config, whose `validate` calls these checks (importing this
module when it runs, as it imports prift.rl and prift.tables). Each check returns its messages (empty: all good).
"""
from __future__ import annotations

from pathlib import Path

from prift.config import SWEEP_FIGURES, probed_domains
from prift.data import count_records

DEFAULT_HELDOUT = 64   # the schema's default of analysis.heldout
DEFAULT_K = 16         # the schema's default of evaluation.k
DEFAULT_N = 16         # the schema's default of generation.n


def dataset_entries(cfg: dict) -> list[tuple[str, dict]]:
    """(config key, entry) of every dataset entry of the config (the schema's `#/definitions/dataset`)."""
    out = [(f"domains.{d}.train", dom["train"]) for d, dom in cfg["domains"].items()]
    out += [(f"benchmarks.{b}.data", bench["data"]) for b, bench in cfg["benchmarks"].items()]
    out += [(f"backbones.{b}.build.corpus", bb["build"]["corpus"]) for b, bb in cfg["backbones"].items()
            if "corpus" in (bb.get("build") or {})]
    if cfg.get("rl"):
        out.append(("rl.prompts", cfg["rl"]["prompts"]))
    fig1c = (cfg.get("figures") or {}).get("fig1c") or {}
    if fig1c.get("reference_data"):
        out.append(("figures.fig1c.reference_data", fig1c["reference_data"]))
    return out


def check_paths(cfg: dict, base: str | Path = ".") -> list[str]:
    """Every local `path:` of a dataset entry or a backbone exists (relative ones under `base`, the working
    directory of the jobs)."""
    base = Path(base)
    given = [(f"{key}.path", e["path"]) for key, e in dataset_entries(cfg) if e.get("path")]
    given += [(f"backbones.{b}.path", bb["path"]) for b, bb in cfg["backbones"].items() if bb.get("path")]
    msgs = []
    for key, path in given:
        p = Path(path)
        if not (p if p.is_absolute() else base / p).exists():
            where = "" if p.is_absolute() else f" (relative to the working directory {base.resolve()})"
            msgs.append(f"config key '{key}': {path} does not exist{where}")
    return msgs


def check_batches(cfg: dict) -> list[str]:
    """global_batch_size of each training recipe is a multiple of its per_device_batch_size."""
    from prift.recipes import Recipe
    msgs = []
    for d, recipe in cfg["training"].items():
        g, p = (recipe.get(k, getattr(Recipe, k)) for k in ("global_batch_size", "per_device_batch_size"))
        if g % p:
            msgs.append(f"config key 'training.{d}.global_batch_size': {g} is not a multiple of "
                        f"per_device_batch_size {p} (gradient accumulation keeps the global batch exact only then)")
    return msgs


def metric_benchmarks(cfg: dict) -> list[str]:
    """The benchmarks whose metrics files some table or sweep figure reads (the pass@k curves of Fig. 3b read
    grades, for any k up to their own n)."""
    names = [b for spec in cfg["tables"].values() for b in spec["benchmarks"]]
    names += [b for fig, f in (cfg.get("figures") or {}).items() if fig in SWEEP_FIGURES for b in f["benchmarks"]]
    return [b for b in dict.fromkeys(names) if b in cfg["benchmarks"]]


def check_samples(cfg: dict) -> list[str]:
    """evaluation.k ≤ n, the samples per problem of every math benchmark whose Avg@k / Pass@k is computed (global
    `generation.n` merged with the benchmark's own `generation`)."""
    k = (cfg.get("evaluation") or {}).get("k", DEFAULT_K)
    msgs = []
    for b in metric_benchmarks(cfg):
        bench = cfg["benchmarks"][b]
        if bench["kind"] != "math":
            continue
        own = (bench.get("generation") or {}).get("n")
        n = own if own is not None else (cfg.get("generation") or {}).get("n", DEFAULT_N)
        if k > n:
            src = f"benchmarks.{b}.generation.n" if own is not None else "generation.n"
            msgs.append(f"config key 'evaluation.k': k={k} is larger than the {n} samples per problem of benchmark "
                        f"'{b}' ({src}); Avg@k / Pass@k need n >= k")
    return msgs


def count_dataset(spec: dict, stop: int, base: str | Path = ".") -> int | None:
    """Records of a dataset entry before its `limit`, counted up to `stop`; None where only a download would tell
    (a hub dataset)."""
    if spec.get("path"):
        p = Path(spec["path"])
        p = p if p.is_absolute() else Path(base) / p
        return count_records(p, stop) if p.is_file() else None
    if spec.get("generator"):
        return spec.get("n")
    return None


def check_heldout(cfg: dict, base: str | Path = ".") -> list[str]:
    """The drift probes' `analysis.heldout` examples fit in each probed domain's training data, by the rule of
    prift.data.prepare_train_heldout: with a `limit`, the records after the first `limit` (at least `heldout` of
    them); without one, the last `heldout` records (at least one left to train on). Run on the config with its
    figure sweeps expanded (Fig. 1c's reference domains train on a `limit` of their data)."""
    probed = probed_domains(cfg)
    held = (cfg.get("analysis") or {}).get("heldout", DEFAULT_HELDOUT)
    if not held:
        return []
    msgs = []
    for d, dom in cfg["domains"].items():
        if probed is not None and d not in probed:
            continue
        spec, limit = dom["train"], dom["train"].get("limit")
        need = limit + held if limit else held + 1
        n = count_dataset(spec, need, base)
        if n is None or n >= need:
            continue
        src = spec.get("path") or f"generator {spec.get('generator')}, n={n}"
        if limit:
            msgs.append(f"config key 'analysis.heldout': {held} held-out examples for the drift probes of domain "
                        f"'{d}' are the records after the first limit={limit} of domains.{d}.train, which has "
                        f"{n} records ({src}); lower analysis.heldout or the limit")
        else:
            msgs.append(f"config key 'analysis.heldout': {held} held-out examples for the drift probes of domain "
                        f"'{d}' leave no training example: domains.{d}.train has {n} records ({src})")
    return msgs
