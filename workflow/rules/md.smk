# Molecular dynamics: equilibrium states, tau_alpha, inherent structures.


rule equilibrate:
    output:
        gsd=RUN / "equilibrium" / "T{T}.gsd",
        report=RUN / "equilibrium" / "T{T}.json",
    log:
        RUN / "logs" / "equilibrate" / "T{T}.log",
    benchmark:
        RUN / "benchmarks" / "equilibrate" / "T{T}.tsv"
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
        cfg=lambda w: section("system", "engine", "md", "equilibration", "dataset", T=w.T),
    shell:
        "OMP_NUM_THREADS={threads} {params.tbotan} equilibrate --config {params.config:q} --temperature {wildcards.T:q} "
        "--output {output.gsd:q} --report {output.report:q} --restart-if-incompatible > {log:q} 2>&1"


rule tau_alpha:
    input:
        RUN / "equilibrium" / "T{T}.gsd",
    output:
        RUN / "tau_alpha" / "T{T}.json",
    log:
        RUN / "logs" / "tau_alpha" / "T{T}.log",
    benchmark:
        RUN / "benchmarks" / "tau_alpha" / "T{T}.tsv"
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
        cfg=lambda w: section("system", "engine", "md", "tau_alpha", T=w.T),
    shell:
        "OMP_NUM_THREADS={threads} {params.tbotan} tau-alpha --config {params.config:q} --temperature {wildcards.T:q} "
        "--equilibrium {input:q} --output {output:q} --restart-if-incompatible > {log:q} 2>&1"


rule quench:
    input:
        RUN / "equilibrium" / "T{T}.gsd",
    output:
        RUN / "inherent" / "T{T}.gsd",
    log:
        RUN / "logs" / "quench" / "T{T}.log",
    benchmark:
        RUN / "benchmarks" / "quench" / "T{T}.tsv"
    conda:
        md_env()
    threads: 2
    resources:
        gpu=uses_gpu(config["engine"]["device"]),
        runtime=runtime(120),
        mem_mb=8000,
    params:
        tbotan=TBOTAN,
        config=RESOLVED,
        cfg=lambda w: section("system", "engine", "quench", "dataset", T=w.T),
    shell:
        "OMP_NUM_THREADS={threads} {params.tbotan} quench --config {params.config:q} --temperature {wildcards.T:q} "
        "--equilibrium {input:q} --output {output:q} > {log:q} 2>&1"
