"""The pipeline configuration translated into the parameters of the MD library.

:mod:`tbotan.md` is a library: its protocols take parameter objects
(:class:`~tbotan.md.protocols.EquilibrationParameters`, ...) and know nothing of the pipeline's
configuration file.  This module is the one place where the validated configuration
(:mod:`tbotan.config`, ``workflow/schemas/config.schema.yaml``) becomes those objects: the
stage commands (``tbotan equilibrate``, ``tau-alpha``, ``iso``) and :mod:`tbotan.labels.chunks`
call it.  Times in the configuration are in units of τα; here they become time units.
"""

from __future__ import annotations

import json
from pathlib import Path

from tbotan import config as cfgmod
from tbotan.errors import FileFormatError, MissingInputError
from tbotan.md import FireParameters, hoomd_available, make_engine
from tbotan.md.protocols import (
    EquilibrationParameters,
    IsoParameters,
    TauAlphaParameters,
    derive_seed,
)


def equilibration_parameters(config: dict, temperature) -> EquilibrationParameters:
    """:class:`EquilibrationParameters` of ``tbotan equilibrate`` at ``temperature``."""
    entry = cfgmod.temperature_entry(config, temperature)
    eq = config["equilibration"]
    tau = float(entry["tau_alpha"])
    return EquilibrationParameters(
        temperature=float(entry["T"]),
        tau_alpha=tau,
        n_particles=config["system"]["n_particles"],
        density=config["system"]["density"],
        n_systems=eq["n_systems"],
        samples_per_system=cfgmod.samples_per_system(config, temperature),
        dt=config["md"]["dt"],
        thermostat_tau=config["md"]["thermostat_tau"],
        melt_temperature=eq["melt_temperature"],
        melt_time=eq["melt_time"],
        equilibration_time=entry.get("equilibration_tau_alpha", eq["equilibration_tau_alpha"])
        * tau,
        sample_interval=entry.get("sample_interval_tau_alpha", eq["sample_interval_tau_alpha"])
        * tau,
        checkpoint_interval=eq["checkpoint_every_tau_alpha"] * tau,
        seed=derive_seed(config["seed"], "equilibrate", cfgmod.temperature_label(entry["T"])),
        max_drift_sigma=eq["max_drift_sigma"],
        energy_records=eq["energy_records"],
        min_msd_between_samples=eq["min_msd_between_samples"],
        max_sample_extensions=eq["max_sample_extensions"],
        allow_unequilibrated=eq["allow_unequilibrated"],
    )


def tau_alpha_parameters(config: dict, temperature) -> TauAlphaParameters:
    """:class:`TauAlphaParameters` of ``tbotan tau-alpha`` at ``temperature``."""
    entry = cfgmod.temperature_entry(config, temperature)
    ta = config["tau_alpha"]
    return TauAlphaParameters(
        temperature=float(entry["T"]),
        tau_alpha_estimate=float(entry["tau_alpha"]),
        q=ta["q"],
        max_time=ta["max_time_tau_alpha"] * float(entry["tau_alpha"]),
        n_origins=ta["n_origins"],
        points_per_decade=ta["points_per_decade"],
        dt=config["md"]["dt"],
        thermostat_tau=config["md"]["thermostat_tau"],
        seed=derive_seed(config["seed"], "tau_alpha", cfgmod.temperature_label(entry["T"])),
    )


def iso_parameters(config: dict, temperature, tau_alpha: float, source: str) -> IsoParameters:
    """:class:`IsoParameters` of ``tbotan iso`` at ``temperature``.

    Args:
        tau_alpha: τα that sets the label time (from :func:`tau_alpha_for_labels`).
        source: where it came from (``table`` or ``measured``), stored as provenance.
    """
    entry = cfgmod.temperature_entry(config, temperature)
    iso = config["iso"]
    return IsoParameters(
        temperature=float(entry["T"]),
        tau_alpha=float(tau_alpha),
        tau_alpha_source=source,
        label_time=iso["label_time_tau_alpha"] * tau_alpha,
        extra_times=sorted(t * tau_alpha for t in iso["extra_times_tau_alpha"]),
        n_replicas=iso["n_replicas"],
        ensemble=iso["ensemble"],
        dt=config["md"]["dt"],
        thermostat_tau=config["md"]["thermostat_tau"],
        segment_time=iso["segment_tau_alpha"] * tau_alpha,
        seed=derive_seed(config["seed"], "iso", cfgmod.temperature_label(entry["T"])),
    )


def tau_alpha_for_labels(config: dict, temperature, measured_json: str | Path | None):
    """(τα, source) that sets the label time: Table I's value or the measured one."""
    entry = cfgmod.temperature_entry(config, temperature)
    if config["tau_alpha"]["source"] == "table":
        return float(entry["tau_alpha"]), "table"
    if measured_json is None or not Path(measured_json).is_file():
        raise MissingInputError(
            f"tau_alpha.source is 'measured' but the measurement for T = {entry['T']} is missing "
            f"({measured_json}); run `tbotan tau-alpha` first"
        )
    data = json.loads(Path(measured_json).read_text())
    if data.get("tau_alpha_measured") is None:
        raise FileFormatError(
            f"{measured_json} holds no τα ({data.get('error', 'unknown reason')})"
        )
    return float(data["tau_alpha_measured"]), "measured"


def engine_options(config: dict) -> tuple[str, dict]:
    """(name, options) for :func:`tbotan.md.make_engine` from the ``engine`` section."""
    e = config["engine"]
    name = e["name"]
    if name == "auto":
        name = "hoomd" if hoomd_available() else "torch"
    if name == "torch":
        return name, {
            "device": e["device"],
            "precision": e["precision"],
            "kernels": e["kernels"],
            "cuda_graphs": e["cuda_graphs"],
            "neighbor_list": e["neighbor_list"],
            "skin": e["skin"],
            "check_interval": e["check_interval"],
        }
    return name, {"device": e["device"], "skin": e["skin"]}


def fire_parameters(config: dict):
    """:class:`tbotan.md.FireParameters` from the ``quench`` section."""
    fire = {k: v for k, v in config["quench"].items() if k != "batch_size"}
    return FireParameters(**fire)


def make_engine_from_config(config: dict, name: str | None = None, device: str | None = None):
    """The MD engine of the configuration's ``engine`` section (optionally overridden)."""
    section = dict(config["engine"])
    if name is not None:
        section["name"] = name
    if device is not None:
        section["device"] = device
    engine_name, options = engine_options({**config, "engine": section})
    return make_engine(engine_name, **options)
