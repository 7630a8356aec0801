"""The run layout: where every file of the pipeline lives under the results root, said once.

Read by the Snakemake rules (workflow/rules/*.smk: their outputs, inputs, logs and timing files, wildcard patterns
included, e.g. `L.sft_final("{domain}", "{backbone}", "{method}")`) and by the package (prift.config: model_dir,
backbone_path, figure_inputs; the trainers: the checkpoints and probes beside a run's final model; prift.costs; the
verbs that need the parts of a path parse them here and nowhere else: `parse_eval`, `parse_run`, `split_run_id`).

    <results>/
      backbones/<backbone>/                                  backbones the DAG builds (the demo's tiny model, GGUF)
      data/<domain>/train.jsonl, heldout.jsonl               normalised training data, the drift probes' examples
      data/<domain>/rl_prompts.jsonl                         RL prompts
      data/benchmarks/<benchmark>.jsonl                      normalised benchmark problems
      scores/<reference>/<student>/<domain>.safetensors      a reference's per-token statistics on the student's tokens
      sft/<domain>/<backbone>/<method>/final/                SFT run: its published model (probes.jsonl inside), and
                                      /checkpoints/, probes.jsonl   beside it while it trains (resumable)
      rl/<domain>/<backbone>/<init>/final/, checkpoints/     RL run from the SFT checkpoint of method <init>
                                                             (a further seed's runs: <method>@seed=<s>, prift.seeds)
      samples/<run>/<benchmark>.jsonl                        n samples per problem       (run = <domain>/<backbone>/
      grades/<run>/<benchmark>.jsonl                         per-sample verdicts          <method>: `run_id`)
      metrics/<run>/<benchmark>.json                         Avg@k, Pass@k, intervals
      tables/<table>.{csv,tex}, <table>_paired.{csv,tex}, <table>_vs_paper.{csv,tex,footnotes.md}, costs.csv
      figures/<table>/<figure>.{png,pdf}                     Fig. 1a/1b/3a/3c of a table's runs (drift probes)
      figures/<figure>.{png,pdf}                             the figures of the config's `figures:`
      summary.md                                             the run's differences in sentences (from the paired CSVs)
      report/front.rst                                       the report's front page (main table, paired, figures)
      report/config.json, .config/<digest>.json              the validated config (the report's copy, the verbs')
      logs/<stage>/<...>.log                                 one log per job
      benchmarks/<rule>/<...>.tsv                            Snakemake's timing files (`benchmark:`), read by costs

Paths are strings joined with "/" (Snakemake's patterns are strings; the wildcards may be "{name}" patterns) from the
results root as the config gives it, normalised as pathlib does ("results/" → "results", "./results" → "results").
This module imports nothing of prift: the ground floor of the layout, importable by the Snakefile and any verb.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

RUN_PARTS = 3              # <domain>/<backbone>/<method>: a run id, the folders of a run under sft/, rl/, samples/...
FINAL = "final"            # a run's published model, inside its run directory
CHECKPOINTS = "checkpoints"
PROBES = "probes.jsonl"    # drift probes: beside `final/` while training, inside it once published
TABLE_PARTS = ("", "_paired", "_vs_paper")   # tables/<table><part>.{csv,tex}
FIGURE_EXTS = ("png", "pdf")

# The output folder of each rule with a timing file: benchmarks/<rule>/<parts>.tsv times the job whose output is
# <folder>/<parts> (a directory: a run, with any checkpoints beside its final model) or the files <folder>/<parts>.*
TIMED_OUTPUT_FOLDER = {"build_backbone": "backbones", "score": "scores", "sft": "sft", "rl": "rl",
                       "generate": "samples", "grade": "grades", "grade_mcq": "grades", "metrics": "metrics"}


def _join(*parts: str) -> str:
    return str(PurePosixPath(*map(str, parts)))


def run_id(domain: str, backbone: str, method: str) -> str:
    """`<domain>/<backbone>/<method>`: the run's folders under samples/, grades/, metrics/ (and its metrics' `run`)."""
    return _join(domain, backbone, method)


def split_run_id(run: str) -> tuple[str, str, str]:
    """(domain, backbone, method) of a run id."""
    parts = tuple(run.split("/"))
    if len(parts) != RUN_PARTS or not all(parts):
        raise ValueError(f"run id {run!r}: expected <domain>/<backbone>/<method>")
    return parts


def parse_eval(path: str | Path) -> tuple[str, str, str, str]:
    """(domain, backbone, method, benchmark) of a samples, grades or metrics file (<kind>/<run>/<benchmark>.<ext>)."""
    p = Path(path)
    if len(p.parts) < RUN_PARTS + 1:
        raise ValueError(f"{path}: expected .../<domain>/<backbone>/<method>/<benchmark>.<ext>")
    return (*p.parts[-RUN_PARTS - 1:-1], p.name.rsplit(".", 1)[0])


def parse_run(path: str | Path) -> tuple[str, str, str]:
    """(domain, backbone, method) of a run's final model directory (sft/<run>/final), or of a file in it."""
    p = Path(path)
    if p.name != FINAL:
        p = p.parent
    if p.name != FINAL or len(p.parts) < RUN_PARTS + 1:
        raise ValueError(f"{path}: expected .../<domain>/<backbone>/<method>/{FINAL}[/<file>]")
    return p.parts[-RUN_PARTS - 1:-1]


# ---- beside a run's final model (any directory the trainers are given, not only those under a results root) -------

def checkpoints_beside(final: str | Path) -> Path:
    """The trainer checkpoints of a run, beside its final model (not an output: a killed job resumes from them)."""
    return Path(final).parent / CHECKPOINTS


def probes_beside(final: str | Path) -> Path:
    """The drift probes a run writes while it trains, beside its final model (published into it at the end)."""
    return Path(final).parent / PROBES


def probes_in(final: str | Path) -> Path:
    """The drift probes of a finished run."""
    return Path(final) / PROBES


class Layout:
    """Every path of one results tree (see the module doc); arguments may be Snakemake wildcard patterns."""

    def __init__(self, root: str | Path = "results"):
        self.root = _join(root)

    def __repr__(self) -> str:
        return f"Layout({self.root!r})"

    def path(self, *parts: str) -> str:
        return _join(self.root, *parts)

    # ---- backbones, data, statistics
    def backbone(self, backbone: str) -> str:
        return self.path("backbones", backbone)

    def train(self, domain: str) -> str:
        return self.path("data", domain, "train.jsonl")

    def heldout(self, domain: str) -> str:
        return self.path("data", domain, "heldout.jsonl")

    def rl_prompts(self, domain: str) -> str:
        return self.path("data", domain, "rl_prompts.jsonl")

    def problems(self, benchmark: str) -> str:
        return self.path("data", "benchmarks", f"{benchmark}.jsonl")

    def scores(self, reference: str, student: str, domain: str) -> str:
        return self.path("scores", reference, student, f"{domain}.safetensors")

    # ---- runs
    def sft_dir(self, domain: str, backbone: str, method: str) -> str:
        return self.path("sft", domain, backbone, method)

    def sft_final(self, domain: str, backbone: str, method: str) -> str:
        return self.path("sft", domain, backbone, method, FINAL)

    def rl_dir(self, domain: str, backbone: str, init: str) -> str:
        return self.path("rl", domain, backbone, init)

    def rl_final(self, domain: str, backbone: str, init: str) -> str:
        return self.path("rl", domain, backbone, init, FINAL)

    # ---- evaluation of one run on one benchmark
    def samples(self, domain: str, backbone: str, method: str, benchmark: str) -> str:
        return self.path("samples", run_id(domain, backbone, method), f"{benchmark}.jsonl")

    def grades(self, domain: str, backbone: str, method: str, benchmark: str) -> str:
        return self.path("grades", run_id(domain, backbone, method), f"{benchmark}.jsonl")

    def metrics(self, domain: str, backbone: str, method: str, benchmark: str) -> str:
        return self.path("metrics", run_id(domain, backbone, method), f"{benchmark}.json")

    # ---- tables, figures, report
    def table(self, table: str, ext: str, part: str = "") -> str:
        """tables/<table><part>.<ext>; part: "" (the table), "_paired" or "_vs_paper" (TABLE_PARTS)."""
        if part not in TABLE_PARTS:
            raise ValueError(f"table part {part!r}: one of {TABLE_PARTS}")
        return self.path("tables", f"{table}{part}.{ext}")

    def vs_paper_notes(self, table: str) -> str:
        return self.path("tables", f"{table}_vs_paper.footnotes.md")

    def costs(self) -> str:
        return self.path("tables", "costs.csv")

    def table_figures(self, table: str) -> str:
        """The folder of a table's probe figures (Fig. 1a/1b/3a/3c)."""
        return self.path("figures", table)

    def table_figure(self, table: str, figure: str, ext: str) -> str:
        return self.path("figures", table, f"{figure}.{ext}")

    def figure_stem(self, figure: str) -> str:
        """A figure of `figures:` without its extension (`prift figures --out` writes <stem>.png and <stem>.pdf)."""
        return self.path("figures", figure)

    def figure(self, figure: str, ext: str) -> str:
        return self.path("figures", f"{figure}.{ext}")

    def summary(self) -> str:
        return self.path("summary.md")

    def front_page(self) -> str:
        return self.path("report", "front.rst")

    def config_used(self) -> str:
        return self.path("report", "config.json")

    def config_copy(self, digest: str) -> str:
        """The validated config the verbs read, one file per content."""
        return self.path(".config", f"{digest}.json")

    # ---- logs and timing files
    def log(self, stage: str, *parts: str) -> str:
        """logs/<stage>/<parts>.log (the last part names the job: its wildcards)."""
        return self.path("logs", stage, *parts[:-1], f"{parts[-1]}.log")

    def timing_root(self) -> str:
        return self.path("benchmarks")

    def timing(self, rule: str, *parts: str) -> str:
        """benchmarks/<rule>/<parts>.tsv: Snakemake's `benchmark:` file of a job (wall time, memory; prift.costs)."""
        return self.path("benchmarks", rule, *parts[:-1], f"{parts[-1]}.tsv")

    def timed_output(self, rule: str, parts: tuple[str, ...]) -> str | None:
        """The output (a directory, or a stem whose files <stem>.* the job wrote) of the job timed by
        timing(rule, *parts); None for a rule whose outputs are not tracked."""
        folder = TIMED_OUTPUT_FOLDER.get(rule)
        return self.path(folder, *parts) if folder else None
