# tbotan: from a KALJ liquid to T-BOTAN predictions and the paper's figures.
#
#   snakemake --cores all                                  # the paper (config.yaml)
#   snakemake --cores all --configfile config/demo.yaml    # laptop demo (minutes)
#   snakemake --workflow-profile profiles/slurm            # a SLURM cluster
#   snakemake --cores all --sdm conda                      # HOOMD-blue from conda-forge
#
# Rules are thin calls of `tbotan <stage>`; the science lives in src/tbotan.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    T=r"\d+\.\d+",
    split="train|validation|test",
    chunk=r"\d{3}",
    model=r"(is\+ts|is|ts)_lg[0-9.eE+-]+_s\d+",


include: "workflow/rules/md.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/learning.smk"
include: "workflow/rules/analysis.smk"


localrules:
    all,


rule all:
    input:
        all_targets(),
    default_target: True
