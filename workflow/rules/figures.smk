# The paper's figures, PNG (in the report) + PDF. `figures` (per table of analysis.tables): Fig. 1a/1b/3a/3c from the
# drift probes of the table's runs. `figure`: each figure of the config's `figures:` (Fig. 1c, 3b, 4, 5, 6a, 6b); their
# runs are ordinary (domain, backbone, method) runs (prift.sweeps.expand_figures adds the sweep points as method
# entries), so the sft and evaluate rules make their inputs (prift.sweeps.figure_inputs).


rule figures:
    """The mechanism figures (Fig. 1a/1b/3a/3c) of one table's fine-tuned runs, from their drift probes."""
    input:
        lambda w: table_probes(w.table),
    output:
        [report(L.table_figure("{table}", fig, "png"), category="Figures", caption=f"../report/{fig}.rst")
         for fig in TABLE_FIGURES],
        [L.table_figure("{table}", fig, "pdf") for fig in TABLE_FIGURES],
    params:
        **cli(),
        out_dir=lambda w: L.table_figures(w.table),
    resources:
        **stage_resources("figures"),
    log:
        L.log("figures", "{table}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} figures --config {params.config} --probes {input} --out-dir {params.out_dir} > {log} 2>&1"


rule figure:
    """One figure of the config's `figures:` from the files prift.sweeps.figure_inputs lists (metrics of the sweep
    points, grades of the pass@k curves, drift probes); its caption: workflow/report/figure.rst."""
    input:
        lambda w: S.figure_inputs(config, w.figure),
    output:
        png=report(L.figure("{figure}", "png"), category="Figures", caption="../report/figure.rst"),
        pdf=L.figure("{figure}", "pdf"),
    wildcard_constraints:
        figure=one_of(config.get("figures") or {}),
    params:
        **cli(),
        sig=lambda w: section_sig("figures", w.figure),
        stem=lambda w: L.figure_stem(w.figure),
    resources:
        **stage_resources("figures"),
    log:
        L.log("figures", "{figure}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} figures --config {params.config} --figure {wildcards.figure} --inputs {input}"
        " --out {params.stem} > {log} 2>&1"
