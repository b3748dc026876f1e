"""Torch engine energies, forces and virial against the float64 NumPy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import BOTAN_REFERENCE, dense_random_configuration
from tbotan.md.torch_engine import TorchEngine
from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch


def relative_force_error(forces, reference):
    return np.abs(forces - reference).max() / np.abs(reference).max()


def test_forces_energies_virial_match_reference_on_random_dense_configurations(cpu_engine):
    batch = ConfigurationBatch.concatenate(
        [dense_random_configuration(n, seed=n) for n in (600, 600, 600)]
    )
    result = cpu_engine.evaluate(batch)
    for b in range(batch.n_systems):
        ref = kalj.evaluate(batch.positions[b], batch.types[b], batch.box[b])
        assert relative_force_error(result.forces[b], ref.forces) < 1e-10
        assert result.per_particle_energy[b].sum() == pytest.approx(
            ref.total_potential_energy, rel=1e-10
        )
        np.testing.assert_allclose(
            result.per_particle_energy[b], ref.per_particle_energy, rtol=1e-10, atol=1e-12
        )
        assert result.virial[b] == pytest.approx(ref.virial, rel=1e-10)


def test_forces_and_energies_match_reference_on_botan_files(cpu_engine, botan_batch):
    result = cpu_engine.evaluate(botan_batch)
    for b, index in enumerate(sorted(BOTAN_REFERENCE)):
        ref = kalj.evaluate(botan_batch.positions[b], botan_batch.types[b], botan_batch.box[b])
        assert relative_force_error(result.forces[b], ref.forces) < 1e-10
        assert result.potential_energy_per_particle[b] == pytest.approx(
            ref.total_potential_energy / 4096, rel=1e-10
        )
        assert result.potential_energy_per_particle[b] == pytest.approx(
            BOTAN_REFERENCE[index]["u"], abs=1e-5
        )


def test_engine_forces_are_minus_gradient_of_engine_energy(cpu_engine):
    conf = dense_random_configuration(300, seed=9)
    forces = cpu_engine.evaluate(conf).forces[0]
    h = 1e-6
    for i in (3, 150):
        for k in range(3):
            shifted = []
            for sign in (1, -1):
                pos = conf.positions.copy()
                pos[0, i, k] += sign * h
                shifted.append(ConfigurationBatch(pos, conf.types, conf.box))
            e = cpu_engine.evaluate(
                ConfigurationBatch.concatenate(shifted)
            ).per_particle_energy.sum(1)
            assert forces[i, k] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-6)


def test_single_precision_is_accurate_to_float32_rounding():
    conf = dense_random_configuration(500, seed=21)
    engine = TorchEngine(device="cpu", precision="float32")
    result = engine.evaluate(conf)
    ref = kalj.evaluate(conf.positions[0], conf.types[0], conf.box[0])
    assert relative_force_error(result.forces[0], ref.forces) < 1e-4
    assert result.potential_energy_per_particle[0] == pytest.approx(
        ref.total_potential_energy / 500, rel=1e-5
    )


def test_boxes_of_different_size_in_one_batch():
    small = dense_random_configuration(300, seed=1)
    dilute = dense_random_configuration(300, seed=2, density=1.0)
    # same N, different boxes: both exact
    batch = ConfigurationBatch.concatenate([small, dilute])
    result = TorchEngine(device="cpu").evaluate(batch)
    for b in range(2):
        ref = kalj.evaluate(batch.positions[b], batch.types[b], batch.box[b])
        assert relative_force_error(result.forces[b], ref.forces) < 1e-10


def test_engine_options_are_validated():
    with pytest.raises(ValueError, match="precision"):
        TorchEngine(precision="float16")
    with pytest.raises(ValueError, match="skin"):
        TorchEngine(skin=-0.1)
    with pytest.raises(ValueError, match="device"):
        TorchEngine(device="tpu")
    with pytest.raises(ValueError, match="min_distance"):
        TorchEngine(min_distance=1.5)


def test_configured_neighbor_list_reaches_the_engine_and_bad_values_are_refused():
    from tbotan import config as cfg
    from tbotan.pipeline import make_engine_from_config

    repo = Path(__file__).resolve().parents[1]
    conf = cfg.load([repo / "config.yaml"], {"engine": {"name": "torch", "device": "cpu"}})
    assert conf["engine"]["neighbor_list"] == "auto"
    for choice in ("half", "full"):
        conf["engine"]["neighbor_list"] = choice
        assert make_engine_from_config(conf).kernels.neighbor_list == choice
    with pytest.raises(cfg.ConfigError, match="neighbor_list"):
        cfg.load([repo / "config.yaml"], {"engine": {"neighbor_list": "quarter"}})
