"""`snakemake --profile slurm` against a real single-node SLURM on this machine (scripts/slurm-local.sh).

A reduced demo DAG goes through sbatch; SLURM's own job records show every job and what it requested (the fake GPUs
of the test node included); the table equals a local run's byte for byte; a second call submits nothing; deleting one
SFT model reruns exactly that run and what depends on it; a training job killed with scancel is resubmitted and
resumes from its trainer checkpoint.

The test node is shaped like a GPU node (4 fake GPUs via gres.conf → /dev/null, 64 CPUs, 512 GB declared with
SlurmdParameters=config_overrides), so the profiles' real requests are submitted unchanged (see the script's header).
Needs root and apt (or an installed slurm-wlm + munge); otherwise skipped. Each snakemake call runs in its own working
directory (--directory), so its locks and logs/ never meet a concurrent run in the repository.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prift import resources
from prift.preflight import dataset_entries
from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "slurm-local.sh"
WORKFLOW_PROFILE = REPO / "workflow" / "profiles" / "default"
RUN = ("math", "tiny", "prift-prob")           # the one SFT run of the reduced table
BENCHMARKS = ["math500", "aime24"]
SMK_TIMEOUT = 900                                # per snakemake call; a hang (e.g. a status query) fails, not blocks

# ----------------------------------------------------------------------------------------------------------------------
# helpers


def reduced_config(results: Path) -> dict:
    """config/demo.yaml, shrunk: 2 methods × 2 benchmarks of 4 problems, 16 SFT steps with a checkpoint every 4."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["results"] = str(results)
    b = cfg["backbones"]["tiny"]["build"]
    b["pretrain_steps"] = 40
    b["corpus"]["n"] = 1500
    cfg["domains"]["math"]["train"]["n"] = 128
    cfg["domains"]["math"]["benchmarks"] = BENCHMARKS
    cfg["benchmarks"] = {k: v for k, v in cfg["benchmarks"].items() if k in BENCHMARKS}
    for v in cfg["benchmarks"].values():
        v["data"]["n"] = 4
    cfg["training"]["math"].update(epochs=1, global_batch_size=8, per_device_batch_size=8, save_steps=4)
    cfg["generation"].update(n=16, max_new_tokens=32)
    cfg["evaluation"]["n_boot"] = 50
    cfg["analysis"] = {"every": 0}  # no drift probes / figures here: tests/test_pipeline.py covers them
    cfg["tables"] = {"table3": dict(cfg["tables"]["table3"], methods=["original", "prift-prob"],
                                    benchmarks=BENCHMARKS)}
    return cfg


def workflow_profile_args() -> list[str]:
    # Snakemake finds a workflow profile at ./profiles/default or <Snakefile dir>/profiles/default only; with the
    # Snakefile at the repository root, workflow/profiles/default is not found by itself (test_profile_* below).
    # The SLURM tests still exercise its requests.
    if (REPO / "profiles" / "default").exists():
        return []
    return ["--workflow-profile", str(WORKFLOW_PROFILE)]


def snakemake(*args, workdir: Path, timeout: int = SMK_TIMEOUT, slurm: bool = True, popen: bool = False):
    cmd = [sys.executable, "-m", "snakemake", *args, "--directory", str(workdir)]
    if slurm:
        # the user's profile; only the first status check comes sooner (40 s by default, for a busy cluster)
        cmd += ["--profile", "slurm", *workflow_profile_args(), "--slurm-init-seconds-before-status-checks", "1"]
    cmd = ["timeout", "-k", "10", str(timeout), *cmd]
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def slurm_jobs(workdir: Path) -> dict[int, dict]:
    """SLURM's own records (slurmctld keeps finished jobs for MinJobAge = 1 h) of the jobs run in `workdir`."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True).stdout
    jobs = {}
    for line in out.splitlines():
        rec = dict(re.findall(r"(\S+?)=(\S*)", line))
        if rec.get("WorkDir") == str(workdir):
            jobs[int(rec["JobId"])] = rec
    return jobs


def rule_of(rec: dict) -> str:
    """The plugin's --comment: rule_<rule>_wildcards_<values> or rule_<group>_<rules> for a group job."""
    c = rec.get("Comment", "")
    m = re.match(r"rule_(\w+?)_wildcards_", c)
    return m.group(1) if m else c.removeprefix("rule_")


def minutes(t: str) -> int:  # SLURM time: [D-]HH:MM:SS
    d, _, hms = t.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(d or 0) * 1440 + h * 60 + m + (s > 0)


def megabytes(m: str) -> int:
    return int(float(m[:-1]) * {"M": 1, "G": 1024, "T": 1024 ** 2}[m[-1]])


def job_stats(output: str) -> dict[str, int]:
    stats = output[output.index("Job stats"):].splitlines()
    counts = {}
    for line in stats[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def tail(p) -> str:
    return p.stdout[-5000:]


# ----------------------------------------------------------------------------------------------------------------------
# the profiles on the paper's config: no cluster needed


def _dry_run_paper(tmp_path, *extra):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")     # the dry run writes the validated config under results/
    for _, entry in dataset_entries(cfg):            # its local files, named relative to the repository: the dry
        if entry.get("path"):                        # run's working directory is another (prift.preflight checks)
            entry["path"] = str(REPO / entry["path"])
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "wd").mkdir()
    p = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", *extra, "--configfile",
                        str(path), "--directory", str(tmp_path / "wd")], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


def _jobs_with_resources(out: str) -> list[tuple[str, dict]]:
    jobs, rule = [], None
    for line in out.splitlines():
        m = re.match(r"\s*rule (\w+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"\s*resources: (.*)", line)
        if m and rule:
            jobs.append((rule, dict(kv.split("=", 1) for kv in m.group(1).split(", "))))
            rule = None
    return jobs


def _check_paper_requests(out: str):
    jobs = _jobs_with_resources(out)
    rules = {r for r, _ in jobs}
    assert {"score", "sft", "rl", "generate", "grade", "metrics", "table", "prepare_train", "prepare_benchmark",
            "prepare_rl", "compare", "costs"} <= rules
    # requests scale with the backbone: a 7-8B SFT run asks for more memory and time than a 1.5B one
    sft = {(int(r["mem_mb"]), int(r["runtime"])) for rule, r in jobs if rule == "sft"}
    assert len(sft) >= 2 and min(sft) < max(sft), sft
    for rule, res in jobs:
        if rule in ("all", "config_used", "summary", "frontpage"):  # localrules: never submitted
            continue
        assert "runtime" in res and "mem_mb" in res, (rule, res)
        if rule == "sft":
            assert res["gpu"] == "4" and res["nodes"] == "1", res          # 4 GPUs per training run, one node
        elif rule == "rl":
            assert res["gpu"] == "4" and res["nodes"] == "1", res          # DAPO: 4 GPUs as in the paper
        elif rule in ("score", "generate", "grade_mcq"):
            assert res["gpu"] == "1", res                                   # one GPU per shard
        else:
            assert "gpu" not in res and "cpus_per_task" in res, (rule, res)  # CPU-only


def test_profile_dry_run_shows_every_jobs_requests(tmp_path):
    """`snakemake --profile slurm -n` on the paper's config prints, per job, the resources it would request."""
    _check_paper_requests(_dry_run_paper(tmp_path, "--workflow-profile", str(WORKFLOW_PROFILE)))


def test_profile_finds_the_workflow_profile_by_itself(tmp_path):
    """What users type: `snakemake --profile slurm`, without --workflow-profile."""
    out = _dry_run_paper(tmp_path)
    assert "workflow specific profile" in out, (
        "workflow/profiles/default is not loaded: Snakemake only looks for profiles/default next to the Snakefile "
        "(the repository root); without it sft/score/generate would be submitted without GPUs")
    _check_paper_requests(out)


# ----------------------------------------------------------------------------------------------------------------------
# the real cluster


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("timeout") is None:
        pytest.skip("coreutils 'timeout' not found")
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (scripts/slurm-local.sh installs packages and starts daemons)")
    was_running = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0
    p = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    if p.returncode in (2, 3, 4):  # not root / cannot install / a foreign slurm.conf
        pytest.skip(f"local SLURM cannot be started: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stdout + p.stderr
    yield
    if not was_running and not os.environ.get("PRIFT_SLURM_KEEP"):
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The reduced demo through SLURM and, at the same time (its jobs mostly wait for SLURM), the same config run
    locally (`--cores 2`) into another results directory."""
    base = tmp_path_factory.mktemp("slurm")
    runs = {}
    for name in ("slurm", "local"):
        (base / name).mkdir()
        path = base / name / "reduced.yaml"
        path.write_text(yaml.safe_dump(reduced_config(base / name / "results")))
        runs[name] = {"wd": base / name / "wd", "config": path, "results": base / name / "results"}
        runs[name]["wd"].mkdir()
    t0 = time.time()
    local = snakemake("--cores", "2", "--configfile", str(runs["local"]["config"]), workdir=runs["local"]["wd"],
                      slurm=False, popen=True)
    try:
        p = snakemake("--configfile", str(runs["slurm"]["config"]), workdir=runs["slurm"]["wd"])
        print(f"\nSLURM run: {time.time() - t0:.0f} s")
        local_out, _ = local.communicate(timeout=SMK_TIMEOUT)
        print(f"local run (alongside): {time.time() - t0:.0f} s")
    finally:
        if local.poll() is None:
            local.kill()
    assert p.returncode == 0, tail(p)
    runs["local"].update(returncode=local.returncode, out=local_out)
    return dict(runs["slurm"], out=p.stdout, jobs=slurm_jobs(runs["slurm"]["wd"]), local=runs["local"])


@pytest.mark.slurm
def test_jobs_went_through_sbatch(slurm_run):
    out, jobs = slurm_run["out"], slurm_run["jobs"]
    submitted = {int(j) for j in re.findall(r"submitted with SLURM jobid (\d+)", out)}
    assert submitted and submitted == set(jobs), (submitted, sorted(jobs))
    assert all(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in jobs.values()), jobs
    by_rule: dict[str, list[dict]] = {}
    for rec in jobs.values():
        by_rule.setdefault(rule_of(rec), []).append(rec)
    # grade + metrics of one (run, benchmark) share one job (the profile's group "evaluate")
    assert {k: len(v) for k, v in by_rule.items()} == {
        "build_backbone": 1, "prepare_train": 1, "prepare_benchmark": 2, "score": 1, "sft": 1, "generate": 4,
        "evaluate_grade_metrics": 4, "table": 1, "paired": 1, "compare": 1, "costs": 1}, sorted(by_rule)
    # config_used, summary, frontpage: localrules (a copy, two small text renderings), never submitted
    # every request of the resource table reached SLURM: GPUs (fake GRES), CPUs, memory, time limit, one node
    table = resources.load()
    for rule, recs in by_rule.items():
        if rule.startswith("evaluate_"):  # a group job: SLURM sees the group's combined request
            continue
        want = resources.request(table, rule, None)  # the demo's tiny backbone: the smallest tier
        for rec in recs:
            assert minutes(rec["TimeLimit"]) == want["runtime"], (rule, rec["TimeLimit"])
            assert megabytes(rec["MinMemoryNode"]) == want["mem_mb"], (rule, rec["MinMemoryNode"])
            assert rec["NumNodes"] == "1", rule
            if "gpu" in want:
                assert rec.get("TresPerJob") == f"gres:gpu:{want['gpu']}", (rule, rec.get("TresPerJob"))
                assert int(rec["NumCPUs"]) == want["gpu"] * want["cpus_per_gpu"], rule
            else:
                assert "TresPerJob" not in rec, rule
                assert int(rec["NumCPUs"]) == want["cpus_per_task"], rule
    table = (slurm_run["results"] / "tables" / "table3.csv").read_text()
    assert "PriFT-prob" in table and "Original" in table


@pytest.mark.slurm
def test_table_equals_local_run(slurm_run):
    local = slurm_run["local"]
    assert local["returncode"] == 0, local["out"][-5000:]
    for ext in ("csv", "tex"):
        assert (local["results"] / "tables" / f"table3.{ext}").read_bytes() == \
            (slurm_run["results"] / "tables" / f"table3.{ext}").read_bytes()


@pytest.mark.slurm
def test_second_call_submits_nothing(slurm_run):
    before = slurm_jobs(slurm_run["wd"])
    p = snakemake("--configfile", str(slurm_run["config"]), workdir=slurm_run["wd"])
    assert p.returncode == 0, tail(p)
    assert "Nothing to be done" in p.stdout, tail(p)
    assert "submitted with SLURM jobid" not in p.stdout
    assert slurm_jobs(slurm_run["wd"]).keys() == before.keys()


def _expected_rerun() -> dict[str, int]:
    n = len(BENCHMARKS)
    return {"sft": 1, "generate": n, "grade": n, "metrics": n, "table": 1, "paired": 1, "compare": 1, "costs": 1,
            "summary": 1, "frontpage": 1, "all": 1, "total": 8 + 3 * n}


@pytest.mark.slurm
def test_deleting_one_sft_model_reruns_exactly_it_and_its_dependents(slurm_run):
    """Snakemake does not redo a deleted intermediate output while everything after it is up to date; named as a
    target together with `all` it is redone, and so is exactly what depends on it (README, "SLURM")."""
    final = slurm_run["results"].joinpath("sft", *RUN, "final")
    shutil.rmtree(final)
    p = snakemake("-n", "--configfile", str(slurm_run["config"]), workdir=slurm_run["wd"])
    assert p.returncode == 0 and "Nothing to be done" in p.stdout, tail(p)
    p = snakemake(str(final), "all", "-n", "--configfile", str(slurm_run["config"]), workdir=slurm_run["wd"])
    assert p.returncode == 0, tail(p)
    assert job_stats(p.stdout) == _expected_rerun(), tail(p)
    # and they are the jobs of that run: the SFT run itself, its samples/grades/metrics, the table
    wild = set(re.findall(r"wildcards: (.*)", p.stdout))
    d, b, m = RUN
    assert wild == {f"domain={d}, backbone={b}, method={m}"} | {
        f"domain={d}, backbone={b}, method={m}, benchmark={x}" for x in BENCHMARKS} | {"table=table3"}, wild


@pytest.mark.slurm
def test_killed_training_job_resumes_from_its_checkpoint(slurm_run):
    """Redo the SFT run from step 0 and scancel its job once the first trainer checkpoint is written: Snakemake sees
    CANCELLED and resubmits it (slurm/config.yaml: retries); the new job resumes from the checkpoint, and the model it
    ends with is the one an uninterrupted run makes (the local run's, byte for byte)."""
    run_dir = slurm_run["results"].joinpath("sft", *RUN)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)   # from step 0, so that there is something to kill
    before = set(slurm_jobs(slurm_run["wd"]))
    proc = snakemake(str(run_dir / "final"), "--configfile", str(slurm_run["config"]), workdir=slurm_run["wd"],
                     popen=True)
    killed = None
    try:
        deadline = time.time() + SMK_TIMEOUT
        while killed is None and time.time() < deadline and proc.poll() is None:
            # trainer_state.json is the last file of a checkpoint: the checkpoint is complete
            if list((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")):
                for jid, rec in slurm_jobs(slurm_run["wd"]).items():
                    if jid not in before and rule_of(rec) == "sft" and rec["JobState"] == "RUNNING":
                        subprocess.run(["scancel", str(jid)], check=True)
                        killed = jid
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=SMK_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "the SFT job finished before it could be killed"
    assert proc.returncode == 0, out[-5000:]
    new = {jid: rec for jid, rec in slurm_jobs(slurm_run["wd"]).items() if jid not in before}
    assert [rule_of(r) for r in new.values()] == ["sft", "sft"], new
    assert new[killed]["JobState"] == "CANCELLED"
    (again,) = [rec for jid, rec in new.items() if jid != killed]
    assert again["JobState"] == "COMPLETED"
    log = slurm_run["results"].joinpath("logs", "sft", *RUN[:2], f"{RUN[2]}.log").read_text()
    m = re.search(r"resuming from \S*checkpoint-(\d+)", log)
    assert m and int(m.group(1)) > 0, log[-3000:]
    summary = json.loads((run_dir / "final" / "prift_run.json").read_text())
    assert summary["resumed_from"] and summary["global_steps"] > int(m.group(1)), summary
    uninterrupted = slurm_run["local"]["results"].joinpath("sft", *RUN, "final", "model.safetensors")
    assert (run_dir / "final" / "model.safetensors").read_bytes() == uninterrupted.read_bytes()
