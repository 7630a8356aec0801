rule sft:
    """Weighted SFT of one (domain, backbone, method). Trainer checkpoints live beside `final/` (not an output), so a
    killed job resumes from its last checkpoint when it is run again."""
    input:
        data=L.train("{domain}"),
        heldout=L.heldout("{domain}"),
        model=lambda w: backbone_input(w.backbone),
        scores=get_scores,
    output:
        directory(L.sft_final("{domain}", "{backbone}", "{method}")),
    params:
        **cli(),
        launch=launcher("sft"),
        sig=lambda w: section_sig("methods", w.method)
        + json.dumps(Seeds.recipe_of(config, w.domain, w.method), sort_keys=True) + section_sig("analysis")
        + backbone_sig(w.backbone, config["methods"][w.method].get("reference") or w.backbone) + TOKENIZATION,
        scores=lambda w, input: f"--scores {input.scores}" if input.scores else "",
    resources:
        **stage_resources("sft"),
    log:
        L.log("sft", "{domain}", "{backbone}", "{method}"),
    benchmark:
        L.timing("sft", "{domain}", "{backbone}", "{method}")
    conda:
        CONDA_ENV
    shell:
        "{params.launch} sft --config {params.config} --domain {wildcards.domain} --backbone {wildcards.backbone}"
        " --method {wildcards.method} --data {input.data} --heldout {input.heldout} {params.scores} --out {output}"
        " > {log} 2>&1"
