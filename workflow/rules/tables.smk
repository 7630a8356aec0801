# Tables, their side by side with the paper, the cost of each stage and the config used: the report's contents.
# `table` matches only the config's table names (so that tables/costs.csv and tables/<t>_vs_paper.csv are not read
# as tables of their own).
TABLE_NAMES = "(?:" + "|".join(re.escape(t) for t in config["tables"]) + ")"


rule table:
    input:
        lambda w: table_metrics(w.table),
    wildcard_constraints:
        table=TABLE_NAMES,
    output:
        csv=report(f"{RESULTS}/tables/{{table}}.csv", category="Tables", subcategory="{table}",
                   caption="../report/table.rst", labels={"table": "{table}", "file": "ours (CSV)"}),
        tex=report(f"{RESULTS}/tables/{{table}}.tex", category="Tables", subcategory="{table}",
                   caption="../report/table.rst", labels={"table": "{table}", "file": "ours (LaTeX)"}),
    params:
        sig=lambda w: section_sig("tables", w.table),
    resources:
        **stage_resources("table"),
    log:
        f"{RESULTS}/logs/tables/{{table}}.log",
    shell:
        "{PRIFT} tables --config {CONFIG_FILE} --table {wildcards.table} --metrics {input}"
        " --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


rule paired:
    """Each method of a table against each baseline on the same problems: Δ, paired bootstrap interval, p-value,
    Holm's correction within the table, the paper's own difference beside ours (prift.tables.paired)."""
    input:
        grades=lambda w: table_grades(w.table),
        paper=lambda w: [f"{workflow.basedir}/config/paper/{w.table}.csv"] if has_paper(w.table) else [],
    wildcard_constraints:
        table=TABLE_NAMES,
    output:
        csv=report(f"{RESULTS}/tables/{{table}}_paired.csv", category="Tables", subcategory="{table}",
                   caption="../report/paired.rst", labels={"table": "{table}", "file": "paired (CSV)"}),
        tex=report(f"{RESULTS}/tables/{{table}}_paired.tex", category="Tables", subcategory="{table}",
                   caption="../report/paired.rst", labels={"table": "{table}", "file": "paired (LaTeX)"}),
    params:
        sig=lambda w: section_sig("tables", w.table) + section_sig("evaluation"),
        paper=lambda w, input: f"--paper {input.paper}" if input.paper else "",
    resources:
        **stage_resources("table"),
    log:
        f"{RESULTS}/logs/tables/{{table}}_paired.log",
    shell:
        "{PRIFT} paired --config {CONFIG_FILE} --table {wildcards.table} --grades {input.grades} {params.paper}"
        " --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


rule compare:
    """One table beside the paper's published values (config/paper/<table>.csv): ours [95% CI] | paper | Δ, a flag
    where the paper's value lies outside our interval, footnotes on the paper's own inconsistencies."""
    input:
        metrics=lambda w: table_metrics(w.table),
        paper=f"{workflow.basedir}/config/paper/{{table}}.csv",
    wildcard_constraints:
        table=TABLE_NAMES,
    output:
        csv=report(f"{RESULTS}/tables/{{table}}_vs_paper.csv", category="Tables", subcategory="{table}",
                   caption="../report/vs_paper.rst", labels={"table": "{table}", "file": "vs paper (CSV)"}),
        tex=report(f"{RESULTS}/tables/{{table}}_vs_paper.tex", category="Tables", subcategory="{table}",
                   caption="../report/vs_paper.rst", labels={"table": "{table}", "file": "vs paper (LaTeX)"}),
        notes=report(f"{RESULTS}/tables/{{table}}_vs_paper.footnotes.md", category="Tables",
                     subcategory="{table}", caption="../report/vs_paper.rst",
                     labels={"table": "{table}", "file": "vs paper (footnotes)"}),
    params:
        sig=lambda w: section_sig("tables", w.table),
    resources:
        **stage_resources("compare"),
    log:
        f"{RESULTS}/logs/tables/{{table}}_vs_paper.log",
    shell:
        "{PRIFT} compare --config {CONFIG_FILE} --table {wildcards.table} --metrics {input.metrics}"
        " --paper {input.paper} --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


rule costs:
    """Wall time, max RSS, GPU-hours and disk per stage from the benchmark files of every job upstream of the tables."""
    input:
        [f"{RESULTS}/tables/{t}.csv" for t in config["tables"]],
    output:
        report(f"{RESULTS}/tables/costs.csv", category="Costs", caption="../report/costs.rst"),
    params:
        gpus=lambda w: gpu_requests(),
    resources:
        **stage_resources("costs"),
    log:
        f"{RESULTS}/logs/tables/costs.log",
    shell:
        "{PRIFT} costs --config {CONFIG_FILE} --benchmarks {RESULTS}/benchmarks --gpus {params.gpus}"
        " --results {RESULTS} --out {output} > {log} 2>&1"


localrules:
    config_used,  # a file copy: not worth an sbatch job


rule config_used:
    """The validated config every job of this results tree ran with (shown in the report)."""
    input:
        CONFIG_FILE,
    output:
        report(f"{RESULTS}/report/config.json", category="Config", caption="../report/config.rst"),
    shell:
        "cp {input} {output}.tmp && mv {output}.tmp {output}"

