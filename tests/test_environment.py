"""The cluster lock (environment/cluster.lock.txt, written by scripts/lock-cluster-env.sh): exact pins that satisfy
pyproject's constraints, for the Python that environment.yml installs, and the versions this test environment runs
(`make install` installs the lock as constraints). No network: the lock is read as a file."""
from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

LOCK = REPO / "environment" / "cluster.lock.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _lock() -> tuple[dict[str, str], dict[str, Version]]:
    """(header fields, {canonical name: pinned version})."""
    header, pins = {}, {}
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"^# (\w+): (.+)$", line):
            header[m.group(1)] = m.group(2).strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            m = PIN.match(line.strip())
            assert m, f"{LOCK.name}: not an exact pin: {line!r}"
            name = canonicalize_name(m.group(1))
            assert name not in pins, f"{LOCK.name}: {name} pinned twice"
            pins[name] = Version(m.group(2))
    return header, pins


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _lock_marker_env(header: dict) -> dict:
    """Marker environment of the lock's target: its Python on Linux x86_64."""
    major, minor = header["python"].split(".")[:2]
    return {**default_environment(), "python_version": f"{major}.{minor}", "python_full_version": f"{major}.{minor}.0",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}


def test_lock_satisfies_pyproject():
    """Every dependency of pyproject (the package's, the dev extra's and the gpu extra's) is pinned in the lock at a
    version its specifier accepts; only what the lock declares it leaves out (flash-attn, built on the cluster) is
    missing."""
    header, pins = _lock()
    project = _pyproject()
    left_out = {canonicalize_name(n) for n in header["inputs"].split("without:", 1)[1].split()}
    env = _lock_marker_env(header)
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"], *project["optional-dependencies"]["gpu"]]
    problems, skipped = [], set()
    for spec in reqs:
        r = Requirement(spec)
        name = canonicalize_name(r.name)
        if r.marker and not r.marker.evaluate(env):
            continue
        if name in left_out:
            skipped.add(name)
            assert name not in pins, f"{name} is declared left out but pinned"
            continue
        if name not in pins:
            problems.append(f"{spec}: not in the lock")
        elif not r.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{spec}: the lock has {pins[name]}")
    assert not problems, "\n".join(problems)
    assert skipped == left_out == {"flash-attn"}


def test_lock_python_is_environment_ymls_and_pyprojects():
    """environment.yml creates the Python the lock was resolved for, installs the lock, and pyproject accepts it."""
    header, _ = _lock()
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    assert pythons == [f"python={header['python']}"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"-r {LOCK.relative_to(REPO).as_posix()}" in pip
    assert Requirement(f"python{_pyproject()['requires-python']}").specifier.contains(header["python"])
    assert f"PYTHON_VERSION={header['python']}" in (REPO / "scripts" / "lock-cluster-env.sh").read_text()


def test_every_rule_runs_in_environment_yml_which_names_the_locks_digest():
    """Each rule's `conda:` is environment.yml (CONDA_ENV), and environment.yml carries the lock's sha256, so that
    with --sdm conda a new lock is a new environment (docs/cluster-env.md)."""
    import hashlib
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'CONDA_ENV = "../../environment.yml"' in common
    assert ((REPO / "workflow" / "rules") / "../../environment.yml").resolve() == (REPO / "environment.yml").resolve()
    envs = [m for p in (REPO / "workflow" / "rules").glob("*.smk") for m in re.findall(r"conda:\n\s+(\S+)",
                                                                                         p.read_text())]
    assert envs and set(envs) == {"CONDA_ENV"}
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert f"# lock sha256: {digest}\n" in (REPO / "environment.yml").read_text(), \
        "environment.yml's '# lock sha256:' is not the lock's: rerun scripts/lock-cluster-env.sh"


def test_this_environment_runs_the_locks_versions():
    """The tests run what the cluster runs: the lock's Python and, for every package of the lock installed here, its
    pinned version (torch's local CPU build, 2.13.0+cpu, counts as 2.13.0). A venv made before the lock changed fails
    here: `make install` rebuilds it."""
    header, pins = _lock()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == header["python"]
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    tools = {"pip", "setuptools", "wheel"}   # the venv's installers, whatever version the venv came with
    wrong = {n: (str(v), str(pins[n])) for n, v in installed.items()
             if n in pins and n not in tools and Version(v.public) != pins[n]}
    assert not wrong, f"installed vs locked (run `make install`): {wrong}"
    assert installed["snakemake-executor-plugin-slurm"] == pins["snakemake-executor-plugin-slurm"]
