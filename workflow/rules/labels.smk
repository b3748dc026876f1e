# Isoconfigurational replicas and labels (chunked, so a cluster can spread them), datasets.


rule iso:
    input:
        unpack(iso_inputs),
    output:
        RUN / "labels" / "T{T}" / "chunk{chunk}.h5",
    log:
        RUN / "logs" / "iso" / "T{T}_chunk{chunk}.log",
    benchmark:
        RUN / "benchmarks" / "iso" / "T{T}_chunk{chunk}.tsv"
    conda:
        md_env()
    threads: 2
    resources:
        gpu=uses_gpu(config["engine"]["device"]),
        runtime=runtime(240),
        mem_mb=8000,
    params:
        tbotan=TBOTAN,
        config=RESOLVED,
        cfg=lambda w: section(
            "system", "engine", "md", "iso", "graph", "dataset", "tau_alpha", T=w.T
        ),
        tau=tau_alpha_option,
    shell:
        "OMP_NUM_THREADS={threads} {params.tbotan} iso --config {params.config:q} --temperature {wildcards.T:q} "
        "--chunk {wildcards.chunk:q} --equilibrium {input.equilibrium:q} --inherent {input.inherent:q} "
        "{params.tau:q} --output {output:q} --restart-if-incompatible > {log:q} 2>&1"


rule dataset:
    input:
        label_chunks,
    output:
        RUN / "datasets" / "T{T}_{split}.h5",
    log:
        RUN / "logs" / "dataset" / "T{T}_{split}.log",
    conda:
        env("envs/analysis.yaml")
    resources:
        runtime=runtime(20),
        mem_mb=4000,
    params:
        tbotan=TBOTAN,
        config=RESOLVED,
        cfg=lambda w: section("dataset", T=w.T),
    shell:
        "{params.tbotan} dataset --config {params.config:q} --temperature {wildcards.T:q} --split {wildcards.split:q} "
        "--chunks {input:q} --output {output:q} > {log:q} 2>&1"
