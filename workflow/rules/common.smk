# Helpers shared by all rule files; the validated configuration, paths, model ids, inputs.
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

# The workflow's own folder (the one holding Snakefile, envs/, src/), from this file's place:
# not workflow.basedir, which is the *calling* workflow's folder when this one is used as a
# module (`module tbotan: snakefile: ".../Snakefile"`, README "Using it from your own folder").
# A module read from a remote repository (snakedeploy's github(...)) has no local folder: then
# the package must be installed where Snakemake runs (pip install), and SRC is None.
_here = str(workflow.current_basedir)
ROOT = Path(_here).parents[1] if os.path.isdir(_here) else None
SRC = ROOT / "src" if ROOT is not None and (ROOT / "src" / "tbotan").is_dir() else None
if SRC is not None:
    sys.path.insert(0, str(SRC))
from tbotan import config as tbotan_config  # noqa: E402  (light: yaml + jsonschema only)
from tbotan import names as tbotan_names  # noqa: E402  (the model ids: standard library only)


def _uses_conda():
    try:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    except Exception:
        return False


# Validate before any job starts, naming the key at fault.  With --sdm conda, HOOMD-blue comes
# from the rules' environment, so its absence here is no error.
try:
    _validated = tbotan_config.validate(config, check_engine=not _uses_conda())
except tbotan_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)
validate(config, schema="../schemas/config.schema.yaml")  # relative to this file

# results_dir and run_name end up in every job's command line.  The rules quote them ({...:q}),
# so spaces work; characters that are unsafe anyway (quotes, `;`, `$`, backticks, newlines,
# `{}` which Snakemake reads as wildcards, `%` which sbatch reads as a pattern...) are refused
# here, before any job: letters, digits, spaces and / . _ - + , = @ : only, no leading `-` (it
# would read as an option) and no leading or trailing whitespace.
_SAFE_PATH = re.compile(r"[\w /.+,=@:-]*")


def unsafe_path_setting(key):
    """Why config[key] cannot be used in the rules' paths, as one line, or None."""
    value = config[key]
    bad = sorted({ch for ch in value if not _SAFE_PATH.fullmatch(ch)})
    if bad:
        reason = "contains " + " ".join(repr(ch) for ch in bad)
    elif value != value.strip():
        reason = "starts or ends with whitespace"
    elif value.startswith("-"):
        reason = "starts with '-'"
    else:
        return None
    return (
        f"{key} {value!r} {reason}; it is used in shell commands, so use only letters, "
        "digits, spaces and / . _ - + , = @ : (no leading '-' or surrounding spaces)"
    )


for _key in ("results_dir", "run_name"):
    if unsafe_path_setting(_key):
        raise WorkflowError(unsafe_path_setting(_key))

# profiles/slurm takes the account and partitions from the environment; an unset variable
# would reach sbatch as a literal "$TBOTAN_SLURM_..." string, so name it before any submission
# (the executor is known only once execution starts, hence onstart; jobs skip the hooks).
SLURM_SETTINGS = (
    "TBOTAN_SLURM_ACCOUNT",
    "TBOTAN_SLURM_CPU_PARTITION",
    "TBOTAN_SLURM_GPU_PARTITION",
)


def check_slurm_settings():
    if getattr(workflow.executor_plugin, "name", None) != "slurm":
        return
    unset = [name for name in SLURM_SETTINGS if name not in os.environ]
    if unset:
        raise WorkflowError(
            "profiles/slurm needs " + ", ".join(unset) + " in the environment: export "
            "TBOTAN_SLURM_ACCOUNT=<account> (empty where the cluster has no accounts), "
            "TBOTAN_SLURM_CPU_PARTITION=<partition> and TBOTAN_SLURM_GPU_PARTITION=<partition> "
            "(README, 'Running on a cluster')"
        )


onstart:
    check_slurm_settings()


RUN = Path(config["results_dir"]) / config["run_name"]
TEMPERATURES = tbotan_config.temperature_labels(config)
TRAINED = tbotan_config.temperature_labels(config, "train")
MODELS = tbotan_config.model_ids(config)
ALL_MODELS = MODELS["main"] + MODELS["ablation"] + MODELS["lambda_global"]

# The resolved configuration every command reads.  Rewritten only when its content changes,
# and not declared as an input: each rule lists the sections it depends on as `params`, so
# changing, say, training.epochs reruns training but no molecular dynamics.
RESOLVED = RUN / "config.yaml"
_text = yaml.safe_dump(config, sort_keys=False)
if not RESOLVED.is_file() or RESOLVED.read_text() != _text:
    RESOLVED.parent.mkdir(parents=True, exist_ok=True)
    _tmp = RESOLVED.with_name("config.yaml.tmp")
    _tmp.write_text(_text)
    os.replace(_tmp, RESOLVED)

# How rules call the package: from this checkout (PYTHONPATH; the conda environments also
# install it), with the interpreter that runs Snakemake, or with each rule's conda environment
# (--sdm conda).  --log-level info: the commands' progress messages reach the job logs.
PYTHON = "python" if _uses_conda() else sys.executable
# (a command, inserted unquoted as {params.tbotan}: its paths are quoted here).  `exec`: the
# tbotan process replaces the job's shell, so a scheduler's signal (SIGTERM before a time limit,
# scancel) reaches it directly and it checkpoints and exits, instead of the shell dying first.
TBOTAN = (
    f"PYTHONPATH={shlex.quote(str(SRC))}${{PYTHONPATH:+:$PYTHONPATH}} " if SRC is not None else ""
) + f"exec {shlex.quote(PYTHON)} -m tbotan --log-level info"


def section(*names, T=None):
    """YAML text of the configuration sections a job depends on (as params, edits rerun it)."""
    out = {name: config[name] for name in names}
    out["seed"] = config["seed"]
    if T is not None:
        out["temperature"] = tbotan_config.temperature_entry(config, T)
    return yaml.safe_dump(out, sort_keys=True)


def n_chunks(T):
    return tbotan_config.n_chunks(config, T)


def uses_gpu(device):
    """The resource ``gpu`` of a job whose configured device is ``device``: 0 for ``cpu``, 1
    for ``cuda``; for ``auto``, 1 on a cluster executor (the compute nodes have the GPUs) or
    where this machine shows one, else 0, so that a CPU-only workstation runs such jobs side
    by side instead of one at a time.  A callable: Snakemake evaluates it once the executor is
    known (at parse time every run looks local)."""

    def gpu(wildcards):
        if device == "cpu":
            return 0
        if device == "auto" and workflow.local_exec and not tbotan_config.gpu_visible():
            return 0
        return 1

    return gpu


def runtime(minutes):
    """A job's time limit (minutes) growing with its attempt: a job killed at its limit is
    retried (profiles/slurm: retries) with twice, then three times the time."""
    return lambda wildcards, attempt: minutes * attempt


def env(path):
    """A conda environment file, relative to the workflow's root (for a remote module: relative
    to the rule files in workflow/rules/, which Snakemake resolves in the remote repository)."""
    path = Path(path)
    if path.is_absolute():
        return str(path)
    return str(ROOT / path) if ROOT is not None else f"../../{path}"


def md_env():
    return env(config["engine"]["hoomd_env"])


def model_parts(model):
    """(variant, λ_g, seed) of a model id such as is+ts_lg0.01_s0 (tbotan.names.ModelId)."""
    parsed = tbotan_names.ModelId.parse(model)
    return parsed.variant, f"{parsed.lambda_global:g}", str(parsed.seed)


def iso_inputs(w):
    inputs = {
        "equilibrium": RUN / "equilibrium" / f"T{w.T}.gsd",
        "inherent": RUN / "inherent" / f"T{w.T}.gsd",
    }
    if config["tau_alpha"]["source"] == "measured":
        inputs["tau_alpha"] = RUN / "tau_alpha" / f"T{w.T}.json"
    return inputs


def tau_alpha_option(w, input):
    """The --tau-alpha-json option as a list, so that {params.tau:q} quotes its path."""
    return ["--tau-alpha-json", input.tau_alpha] if "tau_alpha" in input.keys() else []


def label_chunks(w):
    return expand(RUN / "labels" / f"T{w.T}" / "chunk{chunk:03d}.h5", chunk=range(n_chunks(w.T)))


def figure_inputs(w):
    tests = expand(RUN / "datasets" / "T{T}_test.h5", T=TEMPERATURES)
    # the structural baselines are fitted on the training split and select on the validation
    # split of the training temperatures
    tests += [
        RUN / "datasets" / f"T{T}_{split}.h5"
        for T in TRAINED
        for split in ("train", "validation")
        if tbotan_config.split_sizes(config, T)[split]
    ]
    preds = expand(
        RUN / "predictions" / "{model}" / "T{T}_test.h5", model=ALL_MODELS, T=TEMPERATURES
    )
    metrics = expand(RUN / "models" / "{model}" / "metrics.csv", model=ALL_MODELS)
    return tests + preds + metrics


def all_targets():
    """The run's products.  Listing them (not only the figures) means a deleted product is
    rebuilt, followed by exactly what depends on it; the label chunks are pure intermediates
    and may be deleted to save space once the datasets exist."""
    targets = [RUN / "analysis" / "summary.json"]
    for T in TEMPERATURES:
        targets += [
            RUN / "equilibrium" / f"T{T}.gsd",
            RUN / "inherent" / f"T{T}.gsd",
            RUN / "tau_alpha" / f"T{T}.json",
        ]
        targets += [
            RUN / "datasets" / f"T{T}_{split}.h5"
            for split, n in tbotan_config.split_sizes(config, T).items()
            if n
        ]
    for model in ALL_MODELS:
        targets += [RUN / "models" / model / "model.pt"]
        targets += [RUN / "predictions" / model / f"T{T}_test.h5" for T in TEMPERATURES]
    return targets
