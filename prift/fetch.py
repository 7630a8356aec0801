"""`prift fetch`: every Hugging Face model and dataset a config names, downloaded once into plain local files, and a
config overlay that points the DAG at them.

Compute nodes of many clusters have no internet. Run this on a machine that has (a login node), then run the DAG
with the overlay after the config:

    prift fetch --config config/config.yaml --dest /scratch/$USER/prift-hub     # writes config/fetched.yaml
    snakemake --profile slurm --configfile config/config.yaml config/fetched.yaml

What is fetched (`hub_assets`): every backbone given by `hub:` (at its `revision:`, safetensors weights only when the
repository has them) → `backbones.<b>.path`; every dataset entry given by `hub:` (domains' training sets, the RL
prompts, Fig. 1c's reference data, ...) → a jsonl export of the split, cut to `limit` + the probes' held-out rows
when the entry has a limit → `<entry>.path`; LiveCodeBench's release shards → `benchmarks.<b>.data.path`. Entries
that already have `path:`, a generator or a DAG build are left alone. The overlay adds `path:` keys (each
overrides its entry's hub id), so the records, and every hash and table computed from them, are the same as when
reading the hub, and `revision:` keys: the commit each copy was taken from (the entry's own `revision:` resolved to
its commit; the newest commit for an entry that pins none), so that every run made from the copies names the
weights and data it read (the rules' signatures and the runs' fingerprints include the backbone entries).
Downloads are resumable: a finished export is not fetched again, model snapshots are incremental.

`--pins-only` resolves the commits and writes an overlay of `revision:` keys alone, downloading nothing: the pins
to keep beside a config (`snakemake --configfile config/config.yaml config/pins.yaml`), so that a later run of the
same config reads the same weights and data from the hub.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

# weight formats left out when a model repository has safetensors (the loaders and vLLM read safetensors)
_NOT_WEIGHTS = ["*.bin", "*.pth", "*.pt", "*.gguf", "*.h5", "*.msgpack", "*.onnx", "*.ckpt", "original/*"]


@dataclass(frozen=True)
class Asset:
    kind: str                    # "model" | "dataset" | "lcb" (LiveCodeBench's release shards)
    keys: tuple[str, ...]        # where its entry is in the config, e.g. ("domains", "math", "train")
    hub: str
    revision: str | None = None
    name: str | None = None      # dataset configuration name
    split: str | None = None
    rows: int | None = None      # rows to export (limit + held-out), None = the whole split
    version: str | None = None   # LiveCodeBench release tag

    @property
    def where(self) -> str:
        return ".".join(self.keys)


def hub_assets(cfg: dict) -> list[Asset]:
    """Every hub model and dataset of a config as written (prift.config.read: before validation adds the entries of
    the figure sweeps, which read their data through the entries they derive from), in config order."""
    an = cfg.get("analysis") or {}
    held = int(an.get("heldout", 64)) if an.get("every") else 0
    out: list[Asset] = []

    def walk(node, keys: tuple[str, ...]):
        if isinstance(node, list):
            for i, x in enumerate(node):
                walk(x, keys + (str(i),))
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("hub"), str) and not (node.get("path") or node.get("build") or node.get("run")
                                                      or node.get("generator")):
            out.append(_asset(cfg, node, keys, held))
            return
        for k, v in node.items():
            walk(v, keys + (str(k),))

    walk(cfg, ())
    return out


def _asset(cfg: dict, node: dict, keys: tuple[str, ...], held: int) -> Asset:
    if keys[0] == "backbones":
        return Asset("model", keys, node["hub"], node.get("revision"))
    if keys[0] == "benchmarks" and cfg["benchmarks"][keys[1]]["kind"] == "livecodebench":
        return Asset("lcb", keys, node["hub"], node.get("revision"), version=cfg["benchmarks"][keys[1]]["version"])
    limit = node.get("limit")
    return Asset("dataset", keys, node["hub"], node.get("revision"), node.get("name"), node.get("split", "train"),
                 limit + held if limit else None)


def local_path(asset: Asset, dest: Path) -> Path:
    """Where an asset goes under `dest`: models/<backbone>/, data/<hub>[.<name>].<split>[.<rows>].jsonl,
    lcb/<hub>/ (the same directory for every release tag: release_vN's shards are a subset of release_vN+1's)."""
    def slug(text: str) -> str:  # a file-name-safe form of a hub id, revision or split ("train[10000:]")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text)

    rev = f"@{slug(asset.revision)}" if asset.revision else ""
    if asset.kind == "model":
        return dest / "models" / (asset.keys[1] + rev)
    if asset.kind == "lcb":
        return dest / "lcb" / (slug(asset.hub) + rev)
    parts = [slug(asset.hub) + rev] + ([asset.name] if asset.name else []) + [slug(asset.split)]
    parts += [f"first{asset.rows}"] if asset.rows else []
    return dest / "data" / (".".join(parts) + ".jsonl")


# ---- thin adapters around the hub libraries (network) --------------------------------------------------------------

def _resolve_revision(kind: str, hub: str, revision: str | None) -> str:
    """The commit sha of a hub repository at `revision` (a branch, tag or sha; None = the default branch)."""
    from huggingface_hub import HfApi
    info = HfApi().model_info if kind == "model" else HfApi().dataset_info
    return info(hub, revision=revision).sha


def _download_model(hub: str, revision: str | None, local_dir: Path) -> None:
    from huggingface_hub import HfApi, snapshot_download
    files = HfApi().list_repo_files(hub, revision=revision)
    ignore = _NOT_WEIGHTS if any(f.endswith(".safetensors") for f in files) else None
    snapshot_download(hub, revision=revision, local_dir=str(local_dir), ignore_patterns=ignore)


def _dataset_rows(hub: str, name: str | None, split: str, revision: str | None, rows: int | None) -> list[dict]:
    import datasets
    ds = datasets.load_dataset(hub, name, split=split, revision=revision)
    if rows is not None:
        ds = ds.select(range(min(rows, len(ds))))
    return [dict(r) for r in ds]


def _download_file(hub: str, filename: str, revision: str | None, local_dir: Path) -> None:
    from huggingface_hub import hf_hub_download
    hf_hub_download(hub, filename, repo_type="dataset", revision=revision, local_dir=str(local_dir))


# ---- fetch + overlay -----------------------------------------------------------------------------------------------

def pins(assets: list[Asset], log: Callable[[str], None] = print) -> dict:
    """The overlay of `revision:` keys: every asset's commit (its own revision resolved, else the newest)."""
    overlay: dict = {}
    for a in assets:
        sha = _resolve_revision(a.kind, a.hub, a.revision)
        log(f"{a.where}: {a.hub}{'@' + a.revision if a.revision else ''} = commit {sha}")
        _set(overlay, a.keys, {"revision": sha})
    return overlay


def fetch(assets: list[Asset], dest: str | Path, log: Callable[[str], None] = print) -> dict:
    """Download every asset under `dest` (skipping finished exports) at one resolved commit, and return the config
    overlay (`path:` of the copy, `revision:` of its commit)."""
    from prift.io import write_jsonl
    from prift.livecodebench import release_shards
    dest = Path(dest).resolve()
    overlay: dict = {}
    for a in assets:
        path = local_path(a, dest)
        sha = _resolve_revision(a.kind, a.hub, a.revision)
        if a.kind == "model":
            log(f"{a.where}: model {a.hub}@{sha} → {path}")
            _download_model(a.hub, sha, path)
        elif a.kind == "lcb":
            shards = release_shards(a.version)
            log(f"{a.where}: {a.hub}@{sha} {a.version} ({len(shards)} shards) → {path}")
            fresh = _stamped(path) != sha   # shards of another commit are fetched again
            for shard in shards:
                if fresh or not (path / shard).exists():
                    _download_file(a.hub, shard, sha, path)
        elif path.exists() and _stamped(path) == sha:
            log(f"{a.where}: {path} already there (commit {sha})")
        else:
            log(f"{a.where}: dataset {a.hub}@{sha} [{a.split}]{f' first {a.rows} rows' if a.rows else ''} → {path}")
            rows = _dataset_rows(a.hub, a.name, a.split, sha, a.rows)
            write_jsonl(path, (json.loads(json.dumps(r, default=str)) for r in rows))  # dates etc. as strings
        _stamp(path, sha)
        _set(overlay, a.keys, {"path": str(path), "revision": sha})
    return overlay


def _stamp_file(path: Path) -> Path:
    return path.with_name(path.name + ".revision")


def _stamp(path: Path, sha: str) -> None:
    """Record beside a copy the commit it was taken from."""
    _stamp_file(path).write_text(sha + "\n")


def _stamped(path: Path) -> str | None:
    f = _stamp_file(path)
    return f.read_text().strip() if f.exists() else None


def _set(tree: dict, keys: tuple[str, ...], value: dict) -> None:
    node = tree
    for k in keys:
        node = node.setdefault(k, {})
    node.update(value)


def overlay_text(overlay: dict, config_path: str, dest: str | Path | None) -> str:
    what = (f"--dest {dest}`: local copies of the config's hub models\n# and datasets, with the commit each was taken"
            f" from" if dest is not None else "--pins-only`: the commit of each of the config's\n# hub models and "
                                               "datasets")
    head = (f"# Written by `prift fetch --config {config_path} {what}. Use it after the config it was made from:\n"
            f"#   snakemake --profile slurm --configfile {config_path} <this file>\n")
    return head + yaml.safe_dump(overlay, sort_keys=False, allow_unicode=True)
