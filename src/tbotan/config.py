"""The pipeline configuration: loading, merging overlays, validation and derived quantities.

One schema, ``workflow/schemas/config.schema.yaml``, defines every key with its default,
bounds and description; Snakemake validates the workflow's config against it and this module
loads it for the ``tbotan`` command, filling defaults the same way.  Beyond the schema,
:func:`check_semantics` rejects combinations the schema cannot express (a temperature without
τα when Table I sets the run length, duplicate temperatures, ...), naming the key at fault.

A configuration is a plain nested ``dict``; the helpers below derive what stages need from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from tbotan.errors import ConfigError
from tbotan.names import VARIANTS, model_id

# re-exported: the configuration's error, and the names the workflow derives from it (built
# and parsed in tbotan.names only)
__all__ = ["ConfigError", "VARIANTS", "model_id"]

SCHEMA_NAME = "config.schema.yaml"


def schema_path() -> Path:
    """The schema file: the checkout's workflow/schemas/, or the copy shipped in the package."""
    here = Path(__file__).resolve()
    candidates = [
        here.parents[2] / "workflow" / "schemas" / SCHEMA_NAME,  # source checkout
        here.parent / "data" / SCHEMA_NAME,  # installed package
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"configuration schema {SCHEMA_NAME} not found in {candidates}")


def load_schema() -> dict:
    with open(schema_path()) as fh:
        return yaml.safe_load(fh)


def _validator_with_defaults(schema: dict):
    """A draft 2020-12 validator (Snakemake's) that fills in ``default`` values as it validates."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_)

    extended = jsonschema.validators.extend(base, {"properties": set_defaults})
    return extended(schema)


def _format_error(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        return f"{where}: {error.message} (unknown key; see workflow/schemas/{SCHEMA_NAME})"
    return f"{where}: {error.message}"


def merge(base: dict, overlay: dict) -> dict:
    """Recursive merge of ``overlay`` into a copy of ``base`` (lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(config: dict, check_engine: bool = True) -> dict:
    """Validate ``config`` against the schema, fill defaults and check semantics.

    ``check_engine=False`` skips the check that an engine named in the configuration can be
    imported here (for tools that run no MD, or when the MD runs in another environment).

    Returns:
        A new, complete configuration dictionary.

    Raises:
        ConfigError: naming every offending key.
    """
    config = copy.deepcopy(config)
    check_finite(config)
    validator = _validator_with_defaults(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(map(_format_error, errors)))
    # a second pass fills defaults inside items created by the first
    list(validator.iter_errors(config))
    check_semantics(config, check_engine)
    return config


def load(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    overrides: dict | None = None,
    check_engine: bool = True,
) -> dict:
    """Load YAML files (later ones overlay earlier ones), apply ``overrides``, validate."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    config: dict = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        with open(path) as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of configuration keys")
        config = merge(config, data)
    if overrides:
        config = merge(config, overrides)
    return validate(config, check_engine)


def _non_finite(value, path: str):
    """(key path, value) of every non-finite number in a nested configuration."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{i}]")


def check_finite(config: dict) -> None:
    """Refuse NaN and infinite numbers anywhere (YAML ``.nan``, ``.inf``), naming the keys.

    JSON Schema bounds do not catch them (every comparison with NaN is false, and ``.inf``
    passes a lower bound), yet one would poison a temperature, time step or τα silently.
    """
    bad = list(_non_finite(config, ""))
    if bad:
        shown = ", ".join(f"{path} = {value}" for path, value in bad)
        raise ConfigError(
            f"{shown}: every number in the configuration must be finite; give a real value"
        )


def check_semantics(config: dict, check_engine: bool = True) -> None:
    """Checks the schema cannot express; raise ConfigError naming the key."""
    check_finite(config)
    temps = [entry["T"] for entry in config["temperatures"]]
    labels = [temperature_label(t) for t in temps]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"temperatures: duplicate temperatures {temps}")
    for i, entry in enumerate(config["temperatures"]):
        if "tau_alpha" not in entry:
            raise ConfigError(
                f"temperatures[{i}] (T = {entry['T']}): tau_alpha is missing; every temperature "
                "needs Table I's value (or an estimate): it sets the equilibration and sampling "
                "lengths, and the label time when tau_alpha.source is 'table'"
            )
    if not any(entry["train"] for entry in config["temperatures"]):
        raise ConfigError("temperatures: no temperature has train: true")
    iso = config["iso"]
    if iso["bond_out"] <= iso["bond_in"]:
        raise ConfigError(
            f"iso.bond_out ({iso['bond_out']}) must exceed iso.bond_in ({iso['bond_in']})"
        )
    slab = config["analysis"]["slab"]
    if slab[1] <= slab[0]:
        raise ConfigError(f"analysis.slab must be [z_min, z_max] with z_min < z_max, got {slab}")
    training = config["training"]
    if training["warmup_epochs"] > training["epochs"]:
        raise ConfigError(
            f"training.warmup_epochs ({training['warmup_epochs']}) exceeds training.epochs "
            f"({training['epochs']})"
        )
    from tbotan.physics.kalj import box_length

    box = box_length(config["system"]["n_particles"], config["system"]["density"])
    check_corr_distances(training["corr_distances"], box, "training.corr_distances")
    if config["engine"]["name"] == "hoomd" and check_engine:
        if not _hoomd_importable():
            raise ConfigError(
                "engine.name: 'hoomd' was chosen but HOOMD-blue does not import here; run the "
                "workflow with `--sdm conda` (environment envs/hoomd.yaml) or choose 'torch'/'auto'"
            )


def check_corr_distances(distances, box_length: float, where: str) -> None:
    """Refuse L_Corr distances d > L/2 (ConfigError naming ``where``).

    F(X, d) of the paper's Eq. (9) weighs pairs at minimum-image distance ≈ d; beyond half the
    box edge there are (almost) no such pairs, and what F measures there is an artefact of the
    periodic, mean-subtracted field.  The paper's d = 2, 4, 6 need L ≥ 12 (N = 4096 at ρ = 1.2
    has L = 15.06); smaller boxes need smaller distances (e.g. 1, 2, 3 at N = 400, L = 6.93).
    """
    limit = 0.5 * float(box_length)
    too_far = [float(d) for d in distances if float(d) > limit]
    if too_far:
        raise ConfigError(
            f"{where}: distances {too_far} exceed half the box edge (L/2 = {limit:.3f} σ_AA): "
            "the spatial-correlation loss L_Corr is not defined there; use distances ≤ L/2 "
            "(e.g. [1, 2, 3] for N = 400)"
        )


def _neighbour_capacity(density: float, skin: float) -> float:
    """Mean neighbours within r_c + skin of the most crowded particle type (KALJ)."""
    from tbotan.physics import kalj

    frac = (kalj.FRACTION_A, 1.0 - kalj.FRACTION_A)
    r = kalj.R_CUT
    return max(
        sum(
            density * frac[tj] * 4.0 / 3.0 * math.pi * (float(r[ti, tj]) + skin) ** 3
            for tj in (0, 1)
        )
        for ti in (0, 1)
    )


def md_memory_bytes(
    n_particles: int, n_systems: int, density: float, skin: float = 0.3, stored: int = 0
) -> int:
    """A lower bound on the memory of MD on ``n_systems`` systems of N particles, in bytes.

    What any engine must hold: a neighbour list (int64 flat indices, one row per particle with
    every neighbour within r_c + skin) and a dozen float64 vectors per particle (positions,
    velocities, forces, images, list reference, integrator state), plus ``stored``
    configurations kept on the host (positions, velocities, images).  Real use is higher
    (temporaries, the gathered pair displacements of the force kernel).
    """
    neighbours = _neighbour_capacity(density, skin)
    per_particle = 8 * neighbours + 12 * 3 * 8
    per_stored = 3 * 3 * 8
    return int(n_particles * (n_systems * per_particle + stored * per_stored))


def memory_estimate(
    config: dict, stage: str, n_systems: int | None = None, n_particles: int | None = None
) -> dict:
    """A lower bound on the memory a pipeline stage needs: {'bytes', 'systems', 'keys'}.

    ``stage`` is ``equilibrate``, ``tau-alpha``, ``quench``, ``iso`` or ``import-botan``;
    ``n_systems`` and ``n_particles`` override what the configuration implies (e.g. the
    number and size of the inputs of ``import-botan``).  ``keys`` names the configuration keys
    that set the size, for messages.
    """
    n = int(config["system"]["n_particles"] if n_particles is None else n_particles)
    density = float(config["system"]["density"])
    skin = float(config["engine"].get("skin", 0.3))
    eq, iso = config["equilibration"], config["iso"]
    stored = 0
    if stage == "equilibrate":
        systems = int(eq["n_systems"])
        stored = max(configurations_needed(config, t) for t in temperature_labels(config))
        keys = ["system.n_particles", "equilibration.n_systems"]
    elif stage == "tau-alpha":
        systems = int(eq["n_systems"])
        keys = ["system.n_particles", "equilibration.n_systems"]
    elif stage == "quench":
        stored = max(configurations_needed(config, t) for t in temperature_labels(config))
        systems = min(int(config["quench"]["batch_size"]), stored)
        keys = ["system.n_particles", "quench.batch_size"]
    elif stage == "iso":
        systems = int(iso["configurations_per_chunk"]) * int(iso["n_replicas"])
        keys = ["system.n_particles", "iso.configurations_per_chunk", "iso.n_replicas"]
    elif stage == "import-botan":
        systems = 1
        keys = ["the number of input files"]
    else:
        raise ValueError(f"no memory estimate for stage {stage!r}")
    if n_systems is not None:
        systems = int(n_systems)
    return {
        "bytes": md_memory_bytes(n, systems, density, skin, stored),
        "systems": systems,
        "n_particles": n,
        "keys": keys,
    }


def _hoomd_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("hoomd") is not None


# ---------------------------------------------------------------------------- derived values


def temperature_label(T: float) -> str:
    """Canonical text of a temperature for file names and wildcards: 0.44 → '0.44', 0.5 → '0.50'.

    Two decimals as in the paper; more only when the value needs them (0.455 → '0.455').
    """
    T = float(T)
    return f"{T:.2f}" if abs(round(T, 2) - T) < 1e-12 else f"{T:g}"


def temperature_entry(config: dict, T: float | str) -> dict:
    """The ``temperatures`` entry of T (float or label)."""
    label = T if isinstance(T, str) else temperature_label(T)
    for entry in config["temperatures"]:
        if temperature_label(entry["T"]) == label:
            return entry
    raise ConfigError(f"temperature {label} is not in the configuration's temperatures")


def temperature_labels(config: dict, role: str = "all") -> list[str]:
    """Labels of all, training ('train') or test-only ('untrained') temperatures, ascending."""
    entries = sorted(config["temperatures"], key=lambda e: e["T"])
    if role == "train":
        entries = [e for e in entries if e["train"]]
    elif role == "untrained":
        entries = [e for e in entries if not e["train"]]
    elif role != "all":
        raise ValueError(f"role must be all, train or untrained, got {role!r}")
    return [temperature_label(e["T"]) for e in entries]


#: Device nodes through which a GPU that torch could use shows on Linux (NVIDIA, ROCm).
GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")


def gpu_visible() -> bool:
    """Whether this machine shows a GPU (one of :data:`GPU_DEVICE_NODES`), looked up without
    importing torch: what a ``device: auto`` job claims in the workflow's resources."""
    return any(Path(p).exists() for p in GPU_DEVICE_NODES)


def configurations_needed(config: dict, T: float | str) -> int:
    """How many equilibrium configurations temperature T must provide (all splits)."""
    entry = temperature_entry(config, T)
    ds = config["dataset"]
    if entry["train"]:
        return ds["n_train"] + ds["n_validation"] + ds["n_test"]
    return ds["n_test"]


def samples_per_system(config: dict, T: float | str) -> int:
    """Samples taken along each independent equilibrium trajectory at T."""
    return math.ceil(configurations_needed(config, T) / config["equilibration"]["n_systems"])


def split_sizes(config: dict, T: float | str) -> dict[str, int]:
    """Configurations per split at T: {'train': ..., 'validation': ..., 'test': ...}."""
    entry = temperature_entry(config, T)
    ds = config["dataset"]
    if entry["train"]:
        return {"train": ds["n_train"], "validation": ds["n_validation"], "test": ds["n_test"]}
    return {"train": 0, "validation": 0, "test": ds["n_test"]}


def n_chunks(config: dict, T: float | str) -> int:
    """Isoconfigurational jobs at T."""
    return math.ceil(configurations_needed(config, T) / config["iso"]["configurations_per_chunk"])


#: The dataset graph each variant is built on and predicts edges on (docs/formats.md).
VARIANT_GRAPH = {"is+ts": "graph", "is": "graph", "ts": "graph_ts"}

#: Per-particle targets the network can learn (``model.node_target``, docs/physics.md §5): the
#: bond-breaking correlation C_B (the paper's) and the propensity ⟨|Δr|⟩_iso (the field's
#: benchmark: BOTAN, GlassBench); both are labels of every dataset file (``labels/{target}``).
NODE_TARGETS = ("cb", "propensity")
#: How each node target is named in messages and tables.
NODE_TARGET_TEXT = {"cb": "C_B", "propensity": "propensity"}


def model_ids(config: dict) -> dict[str, list[str]]:
    """The models a run trains: {'main': [...], 'ablation': [...], 'lambda_global': [...]}.

    The main model (``model.variant`` at ``training.lambda_global``) with every seed; each
    ablation variant and each swept λ_g with the first ``training.ablation_seeds`` seeds.
    """
    tr, variant = config["training"], config["model"]["variant"]
    seeds, few = tr["seeds"], tr["seeds"][: tr["ablation_seeds"]]
    main = [model_id(variant, tr["lambda_global"], s) for s in seeds]
    ablation = [
        model_id(v, tr["lambda_global"], s) for v in tr["ablations"] if v != variant for s in few
    ]
    sweep = [
        model_id(variant, lg, s)
        for lg in tr["lambda_global_sweep"]
        if float(lg) != float(tr["lambda_global"])
        for s in few
    ]
    return {"main": main, "ablation": ablation, "lambda_global": sweep}


def section_hash(config: dict, keys: Iterable[str] | None = None) -> str:
    """Short SHA-256 of (a subset of) the configuration, for provenance."""
    data = config if keys is None else {k: config[k] for k in keys}
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_dir(config: dict) -> Path:
    """Output folder of the run: <results_dir>/<run_name>."""
    return Path(config["results_dir"]) / config["run_name"]
