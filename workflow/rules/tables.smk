# Tables, their side by side with the paper, the cost of each stage and the config used: the report's contents.
# `table` matches only the config's table names (so that tables/costs.csv and tables/<t>_vs_paper.csv are not read
# as tables of their own).
TABLE_NAMES = one_of(config["tables"])
MAIN_TABLE = C.main_table(config)   # the table the report opens on (config key report.main_table)


rule table:
    input:
        lambda w: table_metrics(w.table),
    wildcard_constraints:
        table=TABLE_NAMES,
    output:
        csv=report(L.table("{table}", "csv"), category="Tables", subcategory="{table}",
                   caption="../report/table.rst", labels={"table": "{table}", "file": "ours (CSV)"}),
        tex=report(L.table("{table}", "tex"), category="Tables", subcategory="{table}",
                   caption="../report/table.rst", labels={"table": "{table}", "file": "ours (LaTeX)"}),
    params:
        **cli(),
        sig=lambda w: section_sig("tables", w.table),
    resources:
        **stage_resources("table"),
    log:
        L.log("tables", "{table}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} tables --config {params.config} --table {wildcards.table} --metrics {input}"
        " --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


rule paired:
    """Each method of a table against each baseline on the same problems: Δ, paired bootstrap interval, p-value,
    Holm's correction within the table, the paper's own difference beside ours (prift.tables.paired)."""
    input:
        grades=lambda w: table_grades(w.table),
        paper=lambda w: [paper_csv(w.table)] if has_paper(w.table) else [],
    wildcard_constraints:
        table=TABLE_NAMES,
    output:
        csv=report(L.table("{table}", "csv", "_paired"), category="Tables", subcategory="{table}",
                   caption="../report/paired.rst", labels={"table": "{table}", "file": "paired (CSV)"}),
        tex=report(L.table("{table}", "tex", "_paired"), category="Tables", subcategory="{table}",
                   caption="../report/paired.rst", labels={"table": "{table}", "file": "paired (LaTeX)"}),
    params:
        **cli(),
        sig=lambda w: section_sig("tables", w.table) + section_sig("evaluation"),
        paper=lambda w, input: f"--paper {input.paper}" if input.paper else "",
    resources:
        **stage_resources("table"),
    log:
        L.log("tables", "{table}_paired"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} paired --config {params.config} --table {wildcards.table} --grades {input.grades}"
        " {params.paper} --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


rule compare:
    """One table beside the paper's published values (config/paper/<table>.csv): ours [95% CI] | paper | Δ, a flag
    where the paper's value lies outside our interval, footnotes on the paper's own inconsistencies."""
    input:
        metrics=lambda w: table_metrics(w.table),
        paper=paper_csv("{table}"),
    wildcard_constraints:
        table=TABLE_NAMES,
    output:
        csv=report(L.table("{table}", "csv", "_vs_paper"), category="Tables", subcategory="{table}",
                   caption="../report/vs_paper.rst", labels={"table": "{table}", "file": "vs paper (CSV)"}),
        tex=report(L.table("{table}", "tex", "_vs_paper"), category="Tables", subcategory="{table}",
                   caption="../report/vs_paper.rst", labels={"table": "{table}", "file": "vs paper (LaTeX)"}),
        notes=report(L.vs_paper_notes("{table}"), category="Tables", subcategory="{table}",
                     caption="../report/vs_paper.rst", labels={"table": "{table}", "file": "vs paper (footnotes)"}),
    params:
        **cli(),
        sig=lambda w: section_sig("tables", w.table),
    resources:
        **stage_resources("compare"),
    log:
        L.log("tables", "{table}_vs_paper"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} compare --config {params.config} --table {wildcards.table} --metrics {input.metrics}"
        " --paper {input.paper} --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


rule costs:
    """Wall time, max RSS, GPU-hours and disk per stage from the timing files of every job upstream of the tables."""
    input:
        [L.table(t, "csv") for t in config["tables"]],
    output:
        report(L.costs(), category="Costs", caption="../report/costs.rst"),
    params:
        **cli(),
        gpus=lambda w: gpu_requests(),
        timing=lambda w: L.timing_root(),
        results=lambda w: L.root,
    resources:
        **stage_resources("costs"),
    log:
        L.log("tables", "costs"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} costs --config {params.config} --benchmarks {params.timing} --gpus {params.gpus}"
        " --results {params.results} --out {output} > {log} 2>&1"


rule summary:
    """results/summary.md: which differences of the run are significant and which are not, in sentences, from every
    table's paired comparisons (prift.summary); never typed by hand."""
    input:
        [L.table(t, "csv", "_paired") for t in config["tables"]],
    output:
        report(L.summary(), category="Summary", caption="../report/summary.rst"),
    params:
        **cli(),
    resources:
        **stage_resources("table"),
    log:
        L.log("report", "summary"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} summary --config {params.config} --paired {input} --out {output} > {log} 2>&1"


rule frontpage:
    """The report's front page (workflow/report/workflow.rst includes it): the main table, its paired comparisons on
    the average and the mechanism figures (prift.frontpage)."""
    input:
        table=L.table(MAIN_TABLE, "csv"),
        paired=L.table(MAIN_TABLE, "csv", "_paired"),
        figures=[f for f in all_figures() if f.endswith(".png")],
    output:
        L.front_page(),
    params:
        **cli(),
        table=MAIN_TABLE,
    resources:
        **stage_resources("table"),
    log:
        L.log("report", "front"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} frontpage --config {params.config} --table {params.table} --table-csv {input.table}"
        " --paired-csv {input.paired} --figures {input.figures} --out {output} > {log} 2>&1"


localrules:
    config_used,  # a file copy: not worth an sbatch job
    summary,  # two small text renderings: seconds, no GPU
    frontpage,


rule config_used:
    """The validated config every job of this results tree ran with (shown in the report)."""
    input:
        CONFIG_FILE,
    output:
        report(L.config_used(), category="Config", caption="../report/config.rst"),
    log:
        L.log("report", "config"),
    conda:
        CONDA_ENV
    shell:
        "(cp {input} {output}.tmp && mv {output}.tmp {output}) > {log} 2>&1"
