# Config validation and the helpers that map wildcards to files. No logic of its own: prift.config decides.
import hashlib
import json
import re
import sys
from pathlib import Path

from snakemake.utils import validate

from prift import config as C
from prift import resources as R
from prift.data import TOKENIZATION

# prift's validation first: one line per problem (`config key '...': ...`), numbers written 2e-3 read as numbers, files
# and batch sizes checked; Snakemake's own validation then only fills in the schema's defaults.
try:
    config = C.validate(config)
except C.ConfigError as e:
    raise WorkflowError(str(e))
validate(config, "../schemas/config.schema.yaml")

RESULTS = str(C.results(config))
# The CLI verbs read the same validated config, written once per content (so different configs never clash and a
# rerun with the same config rewrites nothing).
_text = json.dumps(config, indent=1, sort_keys=True)
CONFIG_FILE = f"{RESULTS}/.config/{hashlib.sha256(_text.encode()).hexdigest()[:12]}.json"
if not Path(CONFIG_FILE).exists():
    Path(CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
    Path(CONFIG_FILE + ".tmp").write_text(_text)
    Path(CONFIG_FILE + ".tmp").replace(CONFIG_FILE)

PRIFT = f"{sys.executable} -m prift.cli"

wildcard_constraints:
    domain="[^/]+",
    backbone="[^/]+",
    method="[^/]+",
    benchmark="[^/]+",
    table="[^/]+",
    reference="[^/]+",
    student="[^/]+",


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
        n = f"$({sys.executable} -c 'import torch; print(torch.cuda.device_count())')"
        return (f"$( [ {n} -gt 1 ] && echo {sys.executable} -m accelerate.commands.launch --config_file {acc}"
                f" --num_processes {n} -m prift.cli || echo {PRIFT} )")

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


def bench_sig(benchmark, *keys):
    """A params signature of some keys of a benchmark entry ("" when it has none of them)."""
    b = config["benchmarks"][benchmark]
    given = {k: b[k] for k in keys if k in b}
    return json.dumps(given, sort_keys=True) if given else ""


def backbone_input(backbone):
    """The DAG-built backbone directory (or a fine-tuned run's, Fig. 1c's references), nothing for hub/local ones."""
    if config["backbones"][backbone].get("build"):
        return f"{RESULTS}/backbones/{backbone}"
    if config["backbones"][backbone].get("run"):
        return C.backbone_path(config, backbone)
    return []


def get_scores(wildcards):
    """The cached statistics a run reads: those of its reference on the run's own tokenisation of its data
    (rule score: scores/<reference>/<student>/<domain>; the pretrained source is its own reference)."""
    ref = C.reference_of(config, wildcards.backbone, wildcards.method)
    if ref is None:
        return []
    return f"{RESULTS}/scores/{ref}/{wildcards.backbone}/{wildcards.domain}.safetensors"


def get_model(wildcards):
    if wildcards.method == C.ORIGINAL:
        return backbone_input(wildcards.backbone)
    if C.rl_init(wildcards.method) is not None:   # `<init>+rl`: the RL checkpoint (rules/rl.smk)
        return C.model_dir(config, wildcards.domain, wildcards.backbone, wildcards.method)
    return f"{RESULTS}/sft/{wildcards.domain}/{wildcards.backbone}/{wildcards.method}/final"


def rl_init_model(wildcards):
    """The SFT checkpoint an RL run starts from."""
    return f"{RESULTS}/sft/{wildcards.domain}/{wildcards.backbone}/{wildcards.init}/final"


def model_arg(wildcards):
    return C.model_dir(config, wildcards.domain, wildcards.backbone, wildcards.method)


def table_metrics(table):
    spec = config["tables"][table]
    return [f"{RESULTS}/metrics/{spec['domain']}/{b}/{m}/{bench}.json" for b, m, bench in C.table_cells(spec)]


def table_grades(table):
    """The grades of every cell of a table (the paired comparisons read per-problem verdicts)."""
    spec = config["tables"][table]
    return [f"{RESULTS}/grades/{spec['domain']}/{b}/{m}/{bench}.jsonl" for b, m, bench in C.table_cells(spec)]


def benchmarks_of_kind(*kinds):
    """A wildcard regex matching exactly the benchmarks of these kinds (none: a regex that matches nothing), so that
    sampled benchmarks (math, evalplus, livecodebench) and directly scored ones (mcq) reach their grades through
    different rules."""
    names = [re.escape(b) for b, spec in config["benchmarks"].items() if spec["kind"] in kinds]
    return "(?:" + "|".join(names) + ")" if names else "(?!)"


FIGURE_NAMES = ("fig1a", "fig1b", "fig3a", "fig3c")


def table_probes(table):
    """The drift probes of a table's fine-tuned runs (their SFT output directories hold probes.jsonl)."""
    return [f"{RESULTS}/sft/{d}/{b}/{m}/final" for d, b, m in C.table_runs_of(config, table)
            if m != C.ORIGINAL and C.rl_init(m) is None]


def all_figures():
    """The table figures (Fig. 1a/1b/3a/3c of `analysis.tables`) and every figure of `figures:` (those drawn from
    drift probes, Fig. 4 and 5, only when analysis.every > 0, as the table figures)."""
    probes = bool(config["analysis"].get("every"))
    out = [f"{RESULTS}/figures/{fig}.{ext}" for fig in config.get("figures") or {} for ext in ("png", "pdf")
           if probes or fig not in C.PROBE_FIGURES]
    if not probes:
        return out
    return [f"{RESULTS}/figures/{t}/{f}.{ext}" for t in config["analysis"].get("tables", [])
            for f in FIGURE_NAMES for ext in ("png", "pdf")] + out


def has_paper(table):
    return Path(workflow.basedir, "config", "paper", f"{table}.csv").exists()


def all_tables():
    """Every table (CSV + LaTeX), its side by side with the paper where the paper has that table
    (config/paper/<table>.csv), the cost of each stage and the config used (both shown in the report)."""
    return ([f"{RESULTS}/tables/{t}{part}.{ext}" for t in config["tables"] for part in ("", "_paired")
             for ext in ("csv", "tex")]
            + [f"{RESULTS}/tables/{t}_vs_paper.{ext}" for t in config["tables"] if has_paper(t)
               for ext in ("csv", "tex")]
            + [f"{RESULTS}/tables/costs.csv", f"{RESULTS}/report/config.json"])


# ---- report: the GPUs of each stage, for the GPU-hours of rule costs (tables.smk) ---------------------------------
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
