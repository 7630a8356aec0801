rule build_backbone:
    output:
        directory(L.backbone("{backbone}")),
    params:
        **cli(),
        sig=lambda w: section_sig("backbones", w.backbone),
    resources:
        **stage_resources("build_backbone"),
    log:
        L.log("build_backbone", "{backbone}"),
    benchmark:
        L.timing("build_backbone", "{backbone}")
    conda:
        CONDA_ENV
    shell:
        "{params.prift} build-backbone --config {params.config} --backbone {wildcards.backbone} --out {output}"
        " > {log} 2>&1"


rule prepare_train:
    output:
        train=L.train("{domain}"),
        heldout=L.heldout("{domain}"),
    params:
        **cli(),
        sig=lambda w: section_sig("domains", w.domain) + json.dumps(config["analysis"], sort_keys=True),
    resources:
        **stage_resources("prepare_train"),
    log:
        L.log("prepare", "{domain}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} prepare --config {params.config} --domain {wildcards.domain} --out {output.train}"
        " --heldout-out {output.heldout} > {log} 2>&1"


rule prepare_benchmark:
    output:
        L.problems("{benchmark}"),
    params:
        **cli(),
        sig=lambda w: section_sig("benchmarks", w.benchmark),
    resources:
        **stage_resources("prepare_benchmark"),
    log:
        L.log("prepare", "{benchmark}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} prepare --config {params.config} --benchmark {wildcards.benchmark} --out {output} > {log} 2>&1"
