# Observables and the paper's figures, collected into the Snakemake report.


rule figures:
    input:
        figure_inputs,
    output:
        summary=report(RUN / "analysis" / "summary.json", category="Summary"),
        table=report(RUN / "analysis" / "summary.md", category="Summary"),
        figures=report(
            directory(RUN / "analysis" / "figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        RUN / "logs" / "figures.log",
    conda:
        env("envs/analysis.yaml")
    resources:
        runtime=runtime(60),
        mem_mb=8000,
    params:
        tbotan=TBOTAN,
        config=RESOLVED,
        cfg=section("analysis", "temperatures", "model", "training"),
        run=RUN,
        analysis=RUN / "analysis",
    shell:
        "{params.tbotan} figures --run-dir {params.run:q} --config {params.config:q} --output {params.analysis:q} > {log:q} 2>&1"
