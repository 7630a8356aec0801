rule sft:
    """Weighted SFT of one (domain, backbone, method). Trainer checkpoints live beside `final/` (not an output), so a
    killed job resumes from its last checkpoint when it is run again."""
    input:
        data=f"{RESULTS}/data/{{domain}}/train.jsonl",
        heldout=f"{RESULTS}/data/{{domain}}/heldout.jsonl",
        model=lambda w: backbone_input(w.backbone),
        scores=get_scores,
    output:
        directory(f"{RESULTS}/sft/{{domain}}/{{backbone}}/{{method}}/final"),
    params:
        launch=launcher("sft"),
        sig=lambda w: section_sig("methods", w.method) + section_sig("training", w.domain) + section_sig("analysis")
        + backbone_sig(w.backbone, config["methods"][w.method].get("reference") or w.backbone) + TOKENIZATION,
        scores=lambda w, input: f"--scores {input.scores}" if input.scores else "",
    resources:
        **stage_resources("sft"),
    log:
        f"{RESULTS}/logs/sft/{{domain}}/{{backbone}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sft/{{domain}}/{{backbone}}/{{method}}.tsv"
    shell:
        "{params.launch} sft --config {CONFIG_FILE} --domain {wildcards.domain} --backbone {wildcards.backbone}"
        " --method {wildcards.method} --data {input.data} --heldout {input.heldout} {params.scores} --out {output} > {log} 2>&1"
