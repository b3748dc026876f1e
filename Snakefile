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


# In cluster execution every resource but mem_mb/disk_mb is global by default: a profile's
# `resources: gpu=1` would then allow one GPU job on the whole cluster.  GPUs are per job: each
# submitted job or group gets its own (the limit applies within a group, whose chunks share
# their one GPU); on one machine (no executor) the limit is the machine's, as before.
resource_scopes:
    gpu="local",


wildcard_constraints:
    T=r"\d+\.\d+",
    split="train|validation|test",
    chunk=r"\d{3}",
    model=tbotan_names.MODEL_ID_PATTERN,


include: "workflow/rules/md.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/learning.smk"
include: "workflow/rules/analysis.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        all_targets(),
