# T-BOTAN: training on the mixed training temperatures, predictions on every test set.


rule train:
    input:
        train=expand(RUN / "datasets" / "T{T}_train.h5", T=TRAINED),
        validation=expand(RUN / "datasets" / "T{T}_validation.h5", T=TRAINED),
    output:
        model=RUN / "models" / "{model}" / "model.pt",
        metrics=RUN / "models" / "{model}" / "metrics.csv",
    log:
        RUN / "logs" / "train" / "{model}.log",
    benchmark:
        RUN / "benchmarks" / "train" / "{model}.tsv"
    conda:
        env("envs/learning.yaml")
    threads: 2
    resources:
        gpu=uses_gpu(config["training"]["device"]),
        runtime=runtime(720),
        mem_mb=16000,
    params:
        tbotan=TBOTAN,
        config=RESOLVED,
        cfg=section("model", "training", "dataset"),
        parts=lambda w: model_parts(w.model),
        out=lambda w: RUN / "models" / w.model,
    shell:
        "OMP_NUM_THREADS={threads} {params.tbotan} train --config {params.config:q} "
        "--train {input.train:q} --validation {input.validation:q} --variant {params.parts[0]:q} "
        "--lambda-global {params.parts[1]:q} --seed {params.parts[2]:q} --output {params.out:q} "
        "--resume --restart-if-incompatible > {log:q} 2>&1"


rule predict:
    # one job per model: the model is loaded once for the test sets of every temperature
    input:
        model=RUN / "models" / "{model}" / "model.pt",
        datasets=expand(RUN / "datasets" / "T{T}_test.h5", T=TEMPERATURES),
    output:
        expand(RUN / "predictions" / "{{model}}" / "T{T}_test.h5", T=TEMPERATURES),
    log:
        RUN / "logs" / "predict" / "{model}.log",
    conda:
        env("envs/learning.yaml")
    threads: 1
    resources:
        gpu=uses_gpu(config["training"]["device"]),
        runtime=runtime(60),
        mem_mb=8000,
    params:
        tbotan=TBOTAN,
    shell:
        "OMP_NUM_THREADS={threads} {params.tbotan} predict --model {input.model:q} "
        "--dataset {input.datasets:q} --output {output:q} > {log:q} 2>&1"
