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
    params:
        tbotan=TBOTAN,
        config=RESOLVED,
        cfg=section("analysis", "temperatures", "model", "training"),
        run=RUN,
        analysis=RUN / "analysis",
    log:
        RUN / "logs" / "figures.log",
    resources:
        runtime=runtime(60),
        mem_mb=8000,
    conda:
        env("envs/analysis.yaml")
    shell:
        "{params.tbotan} figures --run-dir {params.run:q} --config {params.config:q} --out {params.analysis:q} > {log:q} 2>&1"
