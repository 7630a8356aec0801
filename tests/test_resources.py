"""The resource table (workflow/profiles/default/resources.yaml) and its scaling with the backbone's size; the
CPUs a running job was given."""
import os

import pytest
import yaml

from prift import resources as R


def test_requests_scale_with_backbone_size():
    table = R.load()
    assert R.tier_of(table, None) == R.tier_of(table, 0) == R.tier_of(table, 1.5) == "small"
    assert R.tier_of(table, 2.0) == "small" and R.tier_of(table, 3.1) == "medium" and R.tier_of(table, 8.2) == "large"
    small, large = R.request(table, "sft", 1.5), R.request(table, "sft", 7.6)
    assert small["gpu"] == large["gpu"] == 4                     # the paper: 4 GPUs per training run, any size
    assert small["mem_mb"] < large["mem_mb"] and small["runtime"] < large["runtime"]
    assert R.request(table, "rl", 8.2)["gpu"] == 4 and R.request(table, "generate", 8.2)["gpu"] == 1
    assert "gpu" not in R.request(table, "grade", 8.2)


def test_attempt_scales_only_the_listed_resources():
    table = R.load()
    first, second = R.request(table, "score", 7.6, attempt=1), R.request(table, "score", 7.6, attempt=2)
    assert second["runtime"] == 2 * first["runtime"] and second["mem_mb"] == first["mem_mb"]
    assert R.request(table, "sft", 7.6, attempt=3) == R.request(table, "sft", 7.6, attempt=1)  # SFT resumes instead


def test_unlisted_rules_get_the_default():
    table = R.load()
    assert R.request(table, "some_new_rule", 8.2) == table["default"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["stages"]["sft"].update(mem_mb={"small": 1, "large": 2}), "stages.sft.mem_mb must give a value"),
    (lambda t: t["stages"]["score"].update(scale_with_attempt=["walltime"]), "stages.score.scale_with_attempt"),
    (lambda t: t.update(tiers={"small": 2.0, "large": 5.0}), "tiers must include an unbounded one"),
])
def test_bad_tables_name_the_entry(tmp_path, edit, message):
    table = yaml.safe_load(R.TABLE.read_text())
    edit(table)
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump(table))
    with pytest.raises(R.ResourceError, match=message):
        R.load(path)


def test_allocated_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert R.allocated_cpus({}) == 3
    assert R.allocated_cpus({"SLURM_CPUS_PER_TASK": "2"}) == 2
    assert R.allocated_cpus({"SLURM_CPUS_PER_TASK": "8"}) == 3   # the mask is what the job really has
    assert R.allocated_cpus({"SLURM_CPUS_PER_TASK": "bogus"}) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set())
    assert R.allocated_cpus({}) == 1
