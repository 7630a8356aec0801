# Config validation and the helpers that map wildcards to files; no logic of its own. prift decides: prift.config the
# runs, prift.paths where every file lives (`L`, read by every rule for its outputs, inputs, logs and timing files).
import hashlib
import json
import re
import sys
from pathlib import Path

from snakemake.utils import validate

from prift import config as C
from prift import resources as R
from prift import seeds as Seeds
from prift import sweeps as S
from prift.data import TOKENIZATION
from prift.io import write_text
from prift.paths import TABLE_PARTS, run_id

# prift's validation first: one line per problem (`config key '...': ...`), numbers written 2e-3 read as numbers, files
# and batch sizes checked; Snakemake's own validation then only fills in the schema's defaults.
try:
    config = C.validate(config)
except C.ConfigError as e:
    raise WorkflowError(str(e))
validate(config, "../schemas/config.schema.yaml")

L = C.layout(config)
# The CLI verbs read the same validated config, written once per content (so different configs never clash and a
# rerun with the same config rewrites nothing).
_text = json.dumps(config, indent=1, sort_keys=True)
CONFIG_FILE = L.config_copy(hashlib.sha256(_text.encode()).hexdigest()[:12])
if not Path(CONFIG_FILE).exists():
    write_text(CONFIG_FILE, _text)

PRIFT = f"{sys.executable} -m prift.cli"

wildcard_constraints:
    domain="[^/]+",
    backbone="[^/]+",
    method="[^/]+",
    benchmark="[^/]+",
    table="[^/]+",
    reference="[^/]+",
    student="[^/]+",


class Untracked:
    """A params value that reaches a shell command (`{params.<name>}`) without being a rerun trigger: Snakemake
    records only params of Python's built-in types. For what every job is handed alike and must not rerun it."""

    def __init__(self, value):
        self.value = str(value)

    def __str__(self):
        return self.value

    def __repr__(self):
        return f"Untracked({self.value!r})"


def cli():
    """`params: **cli()`: `{params.prift}`, the command that runs a prift verb in this environment, and
    `{params.config}`, the validated config's file, whose name changes with any key of the config - the part of the
    config a job reads is its own `sig` param, which does rerun it."""
    return {"prift": Untracked(PRIFT), "config": Untracked(CONFIG_FILE)}


def one_of(keys):
    """A wildcard regex matching exactly these names (none: a regex that matches nothing)."""
    keys = [re.escape(k) for k in keys]
    return "(?:" + "|".join(keys) + ")" if keys else "(?!)"


# The software environment of all the rules (`conda:`, a path relative to workflow/rules) is the cluster environment. Without
# `--sdm conda` Snakemake only records its text (the jobs run in the submitting shell's environment: sbatch exports
# it); with it, Snakemake builds the environment from the file, named by the hash of its text, which carries the
# lock's digest (scripts/lock-cluster-env.sh) so that a new lock builds a new environment.
CONDA_ENV = "../../environment.yml"

RESOURCE_TABLE = R.load(Path(workflow.basedir) / "workflow" / "profiles" / "default" / "resources.yaml")


def model_of(wildcards):
    """The backbone whose size a job's resources follow: its `backbone`, or the model of a reference pass."""
    return getattr(wildcards, "backbone", None) or getattr(wildcards, "reference", None)


def stage_resources(stage):
    """`resources: **stage_resources("sft")`: what a job of this stage requests (gpu, cpus, mem_mb, runtime, nodes),
    scaled by the size of its backbone (workflow/profiles/default/resources.yaml; prift.resources)."""

    def size_of(wildcards):
        name = model_of(wildcards)
        return config["backbones"][name].get("size_b") if name in config["backbones"] else None

    keys = R.request(RESOURCE_TABLE, stage, None)
    return {key: (lambda wildcards, attempt, key=key: R.request(RESOURCE_TABLE, stage, size_of(wildcards),
                                                                 attempt)[key]) for key in keys}


def launcher(kind):
    """The command that runs a `prift` verb: one process per GPU the job was granted (accelerate launch; FSDP for
    backbones of 3B parameters or more when training, DDP otherwise), a plain process on CPU or one GPU."""

    def launch(wildcards):
        size = float(config["backbones"][model_of(wildcards)].get("size_b", 0))
        acc = "config/accelerate/fsdp.yaml" if kind == "sft" and size >= 3 else "config/accelerate/ddp.yaml"
        # torch counts the GPUs (CUDA_VISIBLE_DEVICES and SLURM's allocation included), once, where a GPU device
        # file exists; elsewhere 0 without starting a Python that imports torch (~2 s of every model job on CPU)
        n = (f"n=$( {{ ls /dev/nvidia[0-9]* || ls /dev/kfd; }} >/dev/null 2>&1"
             f" && {sys.executable} -c 'import torch; print(torch.cuda.device_count())' || echo 0 )")
        # Untracked: how a job starts (this environment's python, the GPU count) is no reason to rerun it
        return Untracked(f"$( {n}; [ \"$n\" -gt 1 ] && echo {sys.executable} -m accelerate.commands.launch"
                         f" --config_file {acc} --num_processes $n -m prift.cli || echo {PRIFT} )")

    return launch


def section_sig(*keys):
    """A params signature so that a rule reruns when its part of the config changes."""
    node = config
    for k in keys:
        node = node[k]
    return json.dumps(node, sort_keys=True)


def backbone_sig(*names):
    """A params signature of backbone entries (hub id, revision, path, build, ...; not the label): a job reruns when
    the weights it reads change, and so does everything after it."""
    return json.dumps({b: {k: v for k, v in config["backbones"][b].items() if k != "label"}
                       for b in names if b in config["backbones"]}, sort_keys=True)


def seed_sig(domain, method):
    """A params signature of a further seed's run: its random streams' offset (prift.seeds); "" for a first seed's."""
    offset = Seeds.seed_offset(config, domain, method)
    return f"seed_offset={offset}" if offset else ""


def bench_sig(benchmark, *keys):
    """A params signature of some keys of a benchmark entry ("" when it has none of them)."""
    b = config["benchmarks"][benchmark]
    given = {k: b[k] for k in keys if k in b}
    return json.dumps(given, sort_keys=True) if given else ""


def backbone_input(backbone):
    """The DAG-built backbone directory (or a fine-tuned run's, Fig. 1c's references), nothing for hub/local ones."""
    if config["backbones"][backbone].get("build") or config["backbones"][backbone].get("run"):
        return C.backbone_path(config, backbone)
    return []


def get_scores(wildcards):
    """The cached statistics a run reads: those of its reference on the run's own tokenisation of its data (the
    score rule's scores/<reference>/<student>/<domain>; the pretrained source is its own reference)."""
    ref = C.reference_of(config, wildcards.backbone, wildcards.method)
    if ref is None:
        return []
    return L.scores(ref, wildcards.backbone, wildcards.domain)


def get_model(wildcards):
    """The weights a run is evaluated with: the backbone's (`original`), the SFT or the RL run's final model."""
    if wildcards.method == C.ORIGINAL:
        return backbone_input(wildcards.backbone)
    return C.model_dir(config, wildcards.domain, wildcards.backbone, wildcards.method)


def rl_init_model(wildcards):
    """The SFT checkpoint an RL run starts from."""
    return L.sft_final(wildcards.domain, wildcards.backbone, wildcards.init)


def model_arg(wildcards):
    return C.model_dir(config, wildcards.domain, wildcards.backbone, wildcards.method)


def run_arg(wildcards):
    """`--run` of the metrics verb: the run's id (prift.paths.run_id), recorded in its metrics."""
    return run_id(wildcards.domain, wildcards.backbone, wildcards.method)


def table_metrics(table):
    spec = config["tables"][table]
    return [L.metrics(spec["domain"], b, m, bench) for b, m, bench in Seeds.table_inputs(config, table)]


def table_grades(table):
    """The grades of every cell of a table (the paired comparisons read per-problem verdicts)."""
    spec = config["tables"][table]
    return [L.grades(spec["domain"], b, m, bench) for b, m, bench in Seeds.table_inputs(config, table)]


def benchmarks_of_kind(*kinds):
    """A wildcard regex matching exactly the benchmarks of these kinds, so that sampled benchmarks (math, evalplus,
    livecodebench) and directly scored ones (mcq) reach their grades through different rules."""
    return one_of(b for b, spec in config["benchmarks"].items() if spec["kind"] in kinds)


TABLE_FIGURES = ("fig1a", "fig1b", "fig3a", "fig3c")   # of each table of analysis.tables, from its runs' probes


def table_probes(table):
    """The drift probes of a table's fine-tuned runs (their SFT output directories hold probes.jsonl)."""
    return [L.sft_final(d, b, m) for d, b, m in C.table_runs_of(config, table)
            if m != C.ORIGINAL and C.rl_init(m) is None]


def all_figures():
    """The table figures (Fig. 1a/1b/3a/3c of `analysis.tables`) and every figure of `figures:` (those drawn from
    drift probes, Fig. 4 and 5, only when analysis.every > 0, as the table figures)."""
    probes = bool(config["analysis"].get("every"))
    out = [L.figure(fig, ext) for fig in config.get("figures") or {} for ext in ("png", "pdf")
           if probes or fig not in C.PROBE_FIGURES]
    if not probes:
        return out
    return [L.table_figure(t, f, ext) for t in config["analysis"].get("tables", [])
            for f in TABLE_FIGURES for ext in ("png", "pdf")] + out


def paper_csv(table):
    """The paper's transcription of a table (config/paper/<table>.csv; a wildcard pattern as well)."""
    return str(Path(workflow.basedir, "config", "paper", f"{table}.csv"))


def has_paper(table):
    return Path(paper_csv(table)).exists()


def all_tables():
    """Every table (CSV + LaTeX) and its paired comparisons, its side by side with the paper where the paper has that
    table (config/paper/<table>.csv), the cost of each stage and the config used (both shown in the report), the
    summary and the report's front page."""
    table_and_paired = TABLE_PARTS[:2]
    return ([L.table(t, ext, part) for t in config["tables"] for part in table_and_paired for ext in ("csv", "tex")]
            + [L.table(t, ext, "_vs_paper") for t in config["tables"] if has_paper(t) for ext in ("csv", "tex")]
            + [L.costs(), L.config_used(), L.summary(), L.front_page()])


# ---- report: the GPUs of each stage, for the GPU-hours of the costs rule (tables.smk) -------------------------------
def gpus_of(stage, backbone=None):
    """GPUs one job of `stage` (a rule) on `backbone` requests: --set-resources if given, else the resource table
    (stage_resources above), 0 for CPU-only stages."""
    given = workflow.resource_settings.overwrite_resources.get(stage, {})
    if "gpu" in given:
        return float(getattr(given["gpu"], "value", given["gpu"]))
    size = config["backbones"][backbone].get("size_b") if backbone in config["backbones"] else None
    return float(R.request(RESOURCE_TABLE, stage, size).get("gpu", 0))


def gpu_requests():
    """`stage=N stage/backbone=N ...` for `prift costs --gpus`: every rule, and every rule × backbone."""
    stages = [r.name for r in workflow.rules]
    return " ".join([f"{s}={gpus_of(s):g}" for s in stages]
                    + [f"{s}/{b}={gpus_of(s, b):g}" for s in stages for b in config["backbones"]])
