"""FIRE minimisation against HOOMD-blue's reference results on the real BOTAN configurations."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BOTAN_REFERENCE, dense_random_configuration
from tbotan.md import FireParameters, SimulationError
from tbotan.md.torch_engine import TorchEngine
from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch


@pytest.fixture(scope="module")
def botan_minimized(cpu_engine, botan_batch):
    return cpu_engine.minimize(botan_batch)


def test_fire_reproduces_hoomd_inherent_structures_of_botan_files(botan_minimized, botan_batch):
    result = botan_minimized
    for b, index in enumerate(sorted(BOTAN_REFERENCE)):
        ref = BOTAN_REFERENCE[index]
        # independent check of convergence with the NumPy evaluator: its forces differ from the
        # engine's (another summation order) by rounding, ~1e-15 per particle, so mean |F| is
        # allowed 1e-14 above the engine's tolerance of 1e-12
        check = kalj.evaluate(
            result.configurations.positions[b], result.configurations.types[b], botan_batch.box[b]
        )
        assert result.mean_force[b] < 1e-12
        assert np.linalg.norm(check.forces, axis=1).mean() < 1e-12 + 1e-14
        assert check.total_potential_energy / 4096 == pytest.approx(result.energy[b], abs=1e-12)
        assert result.energy[b] == pytest.approx(ref["e_is"], abs=1e-4)
        # HOOMD's steps are counted in blocks of 100 (the reference is the block's end)
        assert abs(result.steps[b] - ref["fire_steps"]) <= 0.3 * ref["fire_steps"]
        moved = (
            botan_batch.unwrapped_positions()[b] - result.configurations.unwrapped_positions()[b]
        )
        assert np.linalg.norm(moved, axis=1).mean() == pytest.approx(ref["disp_is"], rel=0.05)


def test_fire_alone_equals_fire_inside_a_batch(cpu_engine, botan_batch, botan_minimized):
    alone = cpu_engine.minimize(botan_batch.select(3))
    assert alone.steps[0] == botan_minimized.steps[3]
    np.testing.assert_array_equal(
        alone.configurations.positions[0], botan_minimized.configurations.positions[3]
    )


def test_fire_from_a_minimum_stops_after_the_minimum_number_of_steps(cpu_engine, botan_minimized):
    again = cpu_engine.minimize(botan_minimized.configurations.select(0))
    assert again.steps[0] == FireParameters().min_steps + 1
    assert again.energy[0] == pytest.approx(botan_minimized.energy[0], abs=1e-12)


def test_non_converging_fire_names_the_configuration(cpu_engine, liquid_256):
    batch = liquid_256.repeat(2)
    expected = r"FIRE did not converge .* within 50 steps .*system 0"
    with pytest.raises(SimulationError, match=expected):
        cpu_engine.minimize(batch, FireParameters(max_steps=50))


def test_fire_blow_up_reports_system_and_fire_step(cpu_engine, liquid_256):
    # two particles at 0.55 σ: the first FIRE step at dt = 0.02 throws them across the box
    pos = liquid_256.positions.copy()
    pos[0, 7] = pos[0, 8] + np.array([0.55, 0.0, 0.0])
    bad = ConfigurationBatch(pos, liquid_256.types, liquid_256.box)
    batch = ConfigurationBatch.concatenate([liquid_256.with_velocities(None), bad])
    with pytest.raises(SimulationError, match=r"system 1 blew up at step [1-9]\d*"):
        cpu_engine.minimize(batch, FireParameters(dt_init=0.02))


def test_single_precision_cannot_promise_a_1e_minus_12_minimum():
    conf = dense_random_configuration(300, seed=3)
    with pytest.raises(ValueError, match="needs precision 'float64'"):
        TorchEngine(device="cpu", precision="float32").minimize(conf)


def test_fire_parameters_are_validated():
    with pytest.raises(ValueError, match="f_dec"):
        FireParameters(f_dec=1.5)
    with pytest.raises(ValueError, match="dt_init"):
        FireParameters(dt_init=0.5, dt_max=0.02)
    assert FireParameters().initial_dt == 0.02  # HOOMD-blue 4.x starts at dt_max
    assert FireParameters(dt_init=0.002).initial_dt == 0.002
