# Evaluation of one (domain, backbone, method) run on one benchmark.
#   math, evalplus, livecodebench:  prepare_benchmark → generate (samples) → grade → metrics
#   mcq:                            grade_mcq (lm-eval scores the model's option letters; no samples) → metrics
# The benchmark wildcard of each path is restricted to the benchmarks of the kinds its rule handles.


rule generate:
    """n samples per problem, kept for audit; grading can be redone without regenerating."""
    input:
        problems=f"{RESULTS}/data/benchmarks/{{benchmark}}.jsonl",
        model=get_model,
    output:
        f"{RESULTS}/samples/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.jsonl",
    wildcard_constraints:
        benchmark=benchmarks_of_kind("math", "evalplus", "livecodebench"),
    params:
        sig=lambda w: section_sig("generation") + bench_sig(w.benchmark, "generation") + backbone_sig(w.backbone),
        model=model_arg,
    resources:
        **stage_resources("generate"),
    log:
        f"{RESULTS}/logs/generate/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.tsv"
    shell:
        "{PRIFT} generate --config {CONFIG_FILE} --model {params.model} --backbone {wildcards.backbone}"
        " --benchmark {wildcards.benchmark} --problems {input.problems} --out {output} > {log} 2>&1"


rule grade:
    input:
        problems=f"{RESULTS}/data/benchmarks/{{benchmark}}.jsonl",
        samples=f"{RESULTS}/samples/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.jsonl",
    output:
        f"{RESULTS}/grades/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.jsonl",
    wildcard_constraints:
        benchmark=benchmarks_of_kind("math", "evalplus", "livecodebench"),
    params:
        sig=lambda w: bench_sig(w.benchmark, "kind", "format", "version", "chat", "timeout"),
    resources:
        **stage_resources("grade"),
    log:
        f"{RESULTS}/logs/grade/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.log",
    shell:
        "{PRIFT} grade --config {CONFIG_FILE} --benchmark {wildcards.benchmark} --problems {input.problems}"
        " --samples {input.samples} --out {output} > {log} 2>&1"


rule grade_mcq:
    """Multiple choice (MedQA, MMLU-medical, MedMCQA): lm-eval scores the four option letters of the model itself
    (vLLM on GPU); one grades line per question."""
    input:
        model=get_model,
    output:
        f"{RESULTS}/grades/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.jsonl",
    wildcard_constraints:
        benchmark=benchmarks_of_kind("mcq"),
    params:
        sig=lambda w: section_sig("benchmarks", w.benchmark) + backbone_sig(w.backbone),
        model=model_arg,
    resources:
        **stage_resources("grade_mcq"),
    log:
        f"{RESULTS}/logs/grade/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/grade_mcq/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.tsv"
    shell:
        "{PRIFT} grade --config {CONFIG_FILE} --benchmark {wildcards.benchmark} --model {params.model}"
        " --out {output} > {log} 2>&1"


rule metrics:
    input:
        f"{RESULTS}/grades/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.jsonl",
    output:
        f"{RESULTS}/metrics/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.json",
    params:
        sig=lambda w: section_sig("evaluation") + config["domains"][w.domain].get("variant", ""),
    resources:
        **stage_resources("metrics"),
    log:
        f"{RESULTS}/logs/metrics/{{domain}}/{{backbone}}/{{method}}/{{benchmark}}.log",
    shell:
        "{PRIFT} metrics --config {CONFIG_FILE} --run {wildcards.domain}/{wildcards.backbone}/{wildcards.method}"
        " --benchmark {wildcards.benchmark} --grades {input} --out {output} > {log} 2>&1"
