# Evaluation of one (domain, backbone, method) run on one benchmark.
#   math, evalplus, livecodebench:  prepare_benchmark → generate (samples) → grade → metrics
#   mcq:                            grade_mcq (lm-eval scores the model's option letters; no samples) → metrics
# The benchmark wildcard of each path is restricted to the benchmarks of the kinds its rule handles.


rule generate:
    """n samples per problem, kept for audit; grading can be redone without regenerating."""
    input:
        problems=L.problems("{benchmark}"),
        model=get_model,
    output:
        L.samples("{domain}", "{backbone}", "{method}", "{benchmark}"),
    wildcard_constraints:
        benchmark=benchmarks_of_kind("math", "evalplus", "livecodebench"),
    params:
        **cli(),
        sig=lambda w: section_sig("generation") + bench_sig(w.benchmark, "generation") + backbone_sig(w.backbone)
        + seed_sig(w.domain, w.method),
        model=model_arg,
        seed_offset=lambda w: Untracked(Seeds.seed_offset(config, w.domain, w.method)),
    resources:
        **stage_resources("generate"),
    log:
        L.log("generate", "{domain}", "{backbone}", "{method}", "{benchmark}"),
    benchmark:
        L.timing("generate", "{domain}", "{backbone}", "{method}", "{benchmark}")
    conda:
        CONDA_ENV
    shell:
        "{params.prift} generate --config {params.config} --model {params.model} --backbone {wildcards.backbone}"
        " --benchmark {wildcards.benchmark} --seed-offset {params.seed_offset} --problems {input.problems}"
        " --out {output} > {log} 2>&1"


rule grade:
    input:
        problems=L.problems("{benchmark}"),
        samples=L.samples("{domain}", "{backbone}", "{method}", "{benchmark}"),
    output:
        L.grades("{domain}", "{backbone}", "{method}", "{benchmark}"),
    wildcard_constraints:
        benchmark=benchmarks_of_kind("math", "evalplus", "livecodebench"),
    params:
        **cli(),
        sig=lambda w: bench_sig(w.benchmark, "kind", "format", "version", "chat", "timeout"),
    resources:
        **stage_resources("grade"),
    log:
        L.log("grade", "{domain}", "{backbone}", "{method}", "{benchmark}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} grade --config {params.config} --benchmark {wildcards.benchmark} --problems {input.problems}"
        " --samples {input.samples} --out {output} > {log} 2>&1"


rule grade_mcq:
    """Multiple choice (MedQA, MMLU-medical, MedMCQA): lm-eval scores the four option letters of the model itself
    (vLLM on GPU); one grades line per question."""
    input:
        model=get_model,
    output:
        L.grades("{domain}", "{backbone}", "{method}", "{benchmark}"),
    wildcard_constraints:
        benchmark=benchmarks_of_kind("mcq"),
    params:
        **cli(),
        sig=lambda w: section_sig("benchmarks", w.benchmark) + backbone_sig(w.backbone),
        model=model_arg,
    resources:
        **stage_resources("grade_mcq"),
    log:
        L.log("grade", "{domain}", "{backbone}", "{method}", "{benchmark}"),
    benchmark:
        L.timing("grade_mcq", "{domain}", "{backbone}", "{method}", "{benchmark}")
    conda:
        CONDA_ENV
    shell:
        "{params.prift} grade --config {params.config} --benchmark {wildcards.benchmark} --model {params.model}"
        " --out {output} > {log} 2>&1"


rule metrics:
    input:
        L.grades("{domain}", "{backbone}", "{method}", "{benchmark}"),
    output:
        L.metrics("{domain}", "{backbone}", "{method}", "{benchmark}"),
    params:
        **cli(),
        sig=lambda w: section_sig("evaluation") + config["domains"][w.domain].get("variant", ""),
        run=run_arg,
    resources:
        **stage_resources("metrics"),
    log:
        L.log("metrics", "{domain}", "{backbone}", "{method}", "{benchmark}"),
    conda:
        CONDA_ENV
    shell:
        "{params.prift} metrics --config {params.config} --run {params.run} --benchmark {wildcards.benchmark}"
        " --grades {input} --out {output} > {log} 2>&1"
