rule score:
    """One frozen reference pass per (reference, student, domain): the statistics of model {reference} on the training
    data of {domain} as {student}'s trainer tokenises it (the pretrained source: reference = student); every
    cached-source method of that student reads it."""
    input:
        data=L.train("{domain}"),
        model=lambda w: backbone_input(w.reference),
        student=lambda w: backbone_input(w.student) if w.student != w.reference else [],
    output:
        L.scores("{reference}", "{student}", "{domain}"),
    params:
        **cli(),
        launch=launcher("score"),
        sig=lambda w: section_sig("scoring") + section_sig("training", w.domain, "max_length")
        + section_sig("domains", w.domain, "template") + backbone_sig(w.reference, w.student) + TOKENIZATION,
    resources:
        **stage_resources("score"),
    log:
        L.log("score", "{reference}", "{student}", "{domain}"),
    benchmark:
        L.timing("score", "{reference}", "{student}", "{domain}")
    conda:
        CONDA_ENV
    shell:
        "{params.launch} score --config {params.config} --domain {wildcards.domain}"
        " --reference {wildcards.reference} --student {wildcards.student} --data {input.data} --out {output}"
        " > {log} 2>&1"
