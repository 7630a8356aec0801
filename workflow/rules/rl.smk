# DAPO reinforcement learning from SFT checkpoints (Table 5): prepare_rl → rl; the RL checkpoint is evaluated by the
# evaluation rules like any run, under the method name `<init>+rl` (common.smk: get_model; prift.config.model_dir).


rule prepare_rl:
    """The RL prompts (config rl.prompts), deduplicated by problem, without the domain's benchmark problems."""
    output:
        L.rl_prompts("{domain}"),
    params:
        **cli(),
        sig=lambda w: section_sig("rl", "prompts") + section_sig("domains", w.domain, "benchmarks")
        + "".join(section_sig("benchmarks", b, "data") for b in config["domains"][w.domain]["benchmarks"]),
    resources:
        **stage_resources("prepare_rl"),
    log:
        L.log("prepare", "{domain}.rl_prompts"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} prepare-rl --config {params.config} --domain {wildcards.domain} --out {output} > {log} 2>&1"


rule rl:
    """DAPO from the SFT checkpoint of method {init}. Trainer checkpoints live beside `final/` (not an output), so a
    killed job resumes from its last checkpoint when it is run again."""
    input:
        prompts=L.rl_prompts("{domain}"),
        model=rl_init_model,
    output:
        directory(L.rl_final("{domain}", "{backbone}", "{init}")),
    wildcard_constraints:
        init="[^/]+",
    params:
        **cli(),
        launch=launcher("sft"),
        sig=lambda w: json.dumps([config["rl"].get("recipe", {}), config["rl"]["backbones"][w.backbone]],
                                 sort_keys=True) + backbone_sig(w.backbone) + seed_sig(w.domain, w.init),
    resources:
        **stage_resources("rl"),
    log:
        L.log("rl", "{domain}", "{backbone}", "{init}"),
    benchmark:
        L.timing("rl", "{domain}", "{backbone}", "{init}")
    conda:
        CONDA_ENV
    shell:
        "{params.launch} rl --config {params.config} --domain {wildcards.domain} --backbone {wildcards.backbone}"
        " --init {wildcards.init} --model {input.model} --prompts {input.prompts} --out {output} > {log} 2>&1"
