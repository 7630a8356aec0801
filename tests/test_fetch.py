"""`prift fetch`: what the paper config needs from the hub, the local copies and the overlay that points the DAG at
them. The hub itself is out of reach here: its three adapters (model snapshot, dataset rows, dataset file) are
replaced by fakes that serve real-format records (MedMCQA rows from data/medical) and record their calls."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml

from prift import cli
from prift import config as C
from prift import data as D
from prift import fetch as Fe
from prift.livecodebench import release_shards
from tests.conftest import REPO

PAPER = REPO / "config" / "config.yaml"


def test_paper_config_assets():
    assets = {a.where: a for a in Fe.hub_assets(C.read(PAPER))}
    raw = C.read(PAPER)
    models = {f"backbones.{b}" for b, s in raw["backbones"].items() if "hub" in s}
    assert {w for w, a in assets.items() if a.kind == "model"} == models and len(models) == 9
    assert assets["backbones.llama-2-7b"].hub == "meta-llama/Llama-2-7b-hf"
    # training sets with a limit: the limit plus the 64 held-out rows of the drift probes, which come after it
    assert (assets["domains.math.train"].hub, assets["domains.math.train"].rows) == ("AI-MO/NuminaMath-CoT", 100_064)
    assert assets["domains.medical-lowdata.train"].rows == 10_064
    assert assets["domains.code.train"].rows is None  # no limit: the whole split
    assert assets["figures.fig1c.reference_data"].split == "train[10000:]"
    assert assets["rl.prompts"].hub == "BytedTsinghua-SIA/DAPO-Math-17k"
    assert {(a.where, a.version) for a in assets.values() if a.kind == "lcb"} == {
        ("benchmarks.lcb_v5.data", "release_v5"), ("benchmarks.lcb_v6.data", "release_v6")}
    # local files (the benchmarks shipped in data/) and the sweeps' derived entries are not fetched
    assert not any(w.startswith("benchmarks.math500") or "@" in w for w in assets)
    assert Fe.hub_assets(C.read(REPO / "config" / "demo.yaml")) == []


@pytest.fixture
def fake_hub(monkeypatch, eval_data):
    medmcqa = D.read_jsonl(eval_data / "medical" / "medmcqa_test.jsonl")
    calls = {"model": [], "dataset": [], "file": []}

    def rows_of(hub, name, split, revision, rows):
        calls["dataset"].append((hub, split, rows))
        if hub == "openlifescienceai/medmcqa":
            src = medmcqa
        else:  # a math / chat / prompt record that every format of the config can read
            src = [{"problem": f"problem {i}", "solution": f"\\boxed{{{i}}}", "prompt": [{"role": "user",
                    "content": f"problem {i}"}], "reward_model": {"ground_truth": str(i)},
                    "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                   for i in range(300)]
        # as many rows as asked for, as the hub has (the drift probes' rows after a limit must be there:
        # prift.preflight counts them), the fake's rows repeated past their end
        return [dict(src[i % len(src)]) for i in range(rows or len(src))]

    def model(hub, revision, local_dir):
        calls["model"].append((hub, revision))
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "config.json").write_text("{}")

    def file(hub, filename, revision, local_dir):
        calls["file"].append(filename)
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / filename).write_text("")

    head = {"commit": "a"}   # the hub's newest commit letter: a test moves it

    def resolve(kind, hub, revision):
        calls.setdefault("resolve", []).append((kind, hub, revision))
        return revision or head["commit"] * 40   # a pinned revision is already a commit here

    calls["head"] = head
    monkeypatch.setattr(Fe, "_resolve_revision", resolve)
    monkeypatch.setattr(Fe, "_dataset_rows", rows_of)
    monkeypatch.setattr(Fe, "_download_model", model)
    monkeypatch.setattr(Fe, "_download_file", file)
    return calls, medmcqa


def test_fetch_writes_copies_and_an_overlay_the_config_accepts(fake_hub, tmp_path):
    calls, medmcqa = fake_hub
    raw = C.read(PAPER)
    # a smaller limit, so that the export is cut from the fake's 4,183 real MedMCQA rows
    raw["domains"]["medical-lowdata"]["train"]["limit"] = 1000
    assets = Fe.hub_assets(raw)
    overlay = Fe.fetch(assets, tmp_path / "hub", log=lambda *_: None)
    assert len(calls["model"]) == 9 and ("meta-llama/Llama-2-7b-hf", "a" * 40) in calls["model"]
    # every copy names the commit it was taken from (the rules' signatures and the runs' fingerprints read it)
    assert overlay["backbones"]["llama-2-7b"]["revision"] == "a" * 40
    assert overlay["domains"]["math"]["train"]["revision"] == "a" * 40
    # LiveCodeBench: release_v6's shards once each (release_v5's are among them), in one directory
    assert sorted(calls["file"]) == sorted(release_shards("release_v6"))
    lcb5 = overlay["benchmarks"]["lcb_v5"]["data"]["path"]
    assert lcb5 == overlay["benchmarks"]["lcb_v6"]["data"]["path"]

    merged = C.deep_merge(raw, overlay)
    cfg = C.validate(copy.deepcopy(merged))  # the overlay only adds `path:` keys: still a valid config
    assert cfg["backbones"]["llama-2-7b"]["path"] == str(tmp_path / "hub" / "models" / "llama-2-7b")
    assert C.backbone_path(cfg, "llama-2-7b") == str(tmp_path / "hub" / "models" / "llama-2-7b")
    # the training set read from the copy = the hub's first `limit` records, and the probes' 64 come right after
    spec = cfg["domains"]["medical-lowdata"]["train"]
    train, held = D.prepare_train_heldout(spec, "medmcqa", "plain", heldout=64)
    assert [t["id"] for t in train] == [r["id"] for r in medmcqa[:1000]]
    assert [h["id"] for h in held] == [r["id"] for r in medmcqa[1000:1064]]
    # Fig. 1c's references read the fetched slice through the entries the sweep derives from it
    ref = cfg["domains"]["medical-lowdata@ref2000"]["train"]
    assert ref["path"] == overlay["figures"]["fig1c"]["reference_data"]["path"] and ref["limit"] == 2000

    # a second run downloads no dataset again (finished exports stay), models resume inside snapshot_download
    n = len(calls["dataset"])
    Fe.fetch(assets, tmp_path / "hub", log=lambda *_: None)
    assert len(calls["dataset"]) == n
    # once the hub has moved, an export of an unpinned entry is taken again at the new commit, and says so
    calls["head"]["commit"] = "b"
    again = Fe.fetch(assets, tmp_path / "hub", log=lambda *_: None)
    assert len(calls["dataset"]) == 2 * n and again["domains"]["math"]["train"]["revision"] == "b" * 40


def test_pins_only_resolves_every_commit_and_downloads_nothing(fake_hub, tmp_path):
    calls, _ = fake_hub
    out = tmp_path / "pins.yaml"
    assert cli.main(["fetch", "--config", str(PAPER), "--pins-only", "--out", str(out)]) == 0
    pins = yaml.safe_load(out.read_text())
    assert not calls["model"] and not calls["dataset"] and not calls["file"]
    assert pins["backbones"]["qwen2.5-math-7b"] == {"revision": "a" * 40}
    assert set(pins["backbones"]) == set(C.read(PAPER)["backbones"])
    cfg = C.validate(C.deep_merge(C.read(PAPER), pins))      # the pins overlay keeps the config valid
    assert cfg["backbones"]["llama-2-7b"]["revision"] == "a" * 40


def test_cli_dry_run_lists_and_writes_nothing(tmp_path):
    out = tmp_path / "fetched.yaml"
    p = subprocess.run([sys.executable, "-m", "prift.cli", "fetch", "--config", str(PAPER), "--dest",
                        str(tmp_path / "hub"), "--out", str(out), "--dry-run"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == len(Fe.hub_assets(C.read(PAPER)))
    assert any("meta-llama/Llama-2-7b-hf" in l and str(tmp_path / "hub" / "models" / "llama-2-7b") in l
               for l in lines)
    assert not out.exists() and not (tmp_path / "hub").exists()


def test_dag_runs_on_the_overlay(fake_hub, tmp_path):
    """snakemake with the overlay after the config: the DAG builds, and the config its jobs read has the copies."""
    raw = C.read(PAPER)
    overlay = Fe.fetch(Fe.hub_assets(raw), tmp_path / "hub", log=lambda *_: None)
    ov = tmp_path / "fetched.yaml"
    ov.write_text(Fe.overlay_text(overlay, "config/config.yaml", tmp_path / "hub"))
    res = tmp_path / "results"
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile",
                        "config/config.yaml", str(ov), "--config", f"results={res}"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (used,) = (res / ".config").glob("*.json")
    cfg = json.loads(used.read_text())
    assert cfg["domains"]["math"]["train"]["path"].startswith(str(tmp_path / "hub"))
    assert cfg["backbones"]["qwen3-8b-base"]["path"] == str(tmp_path / "hub" / "models" / "qwen3-8b-base")
    assert yaml.safe_load(ov.read_text()) == overlay


def test_pinned_revision_reaches_every_loader_as_a_snapshot(monkeypatch, tmp_path):
    """A backbone's `revision:` pins what every verb loads: the hub id becomes that revision's local snapshot
    (transformers, vLLM and lm-eval then read the same weights); unpinned ids and local paths pass unchanged."""
    import huggingface_hub
    got = []

    def snapshot(repo_id, revision=None, **kw):
        got.append((repo_id, revision))
        return str(tmp_path / "snap" / revision)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    cfg = C.validate(C.read(PAPER))
    cfg["backbones"]["llama-2-7b"]["revision"] = "01c7f73"
    assert C.resolve_weights(cfg, "meta-llama/Llama-2-7b-hf") == str(tmp_path / "snap" / "01c7f73")
    assert got == [("meta-llama/Llama-2-7b-hf", "01c7f73")]
    assert C.resolve_weights(cfg, "Qwen/Qwen3-8B-Base") == "Qwen/Qwen3-8B-Base"  # not pinned
    assert C.resolve_weights(cfg, str(tmp_path)) == str(tmp_path)  # a local directory (a fine-tuned run)
    cfg["backbones"]["llama-2-7b-again"] = {**cfg["backbones"]["llama-2-7b"], "revision": "main"}
    with pytest.raises(C.ConfigError, match="pinned to several revisions"):
        C.resolve_weights(cfg, "meta-llama/Llama-2-7b-hf")
    assert len(got) == 1
