"""The engine contract: every engine (torch always, HOOMD-blue where it imports) must pass these.

Forces and energies against the float64 reference, NVE drift, thermostat statistics, FIRE on
the real BOTAN data, and agreement between engines on identical inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BOTAN_REFERENCE, dense_random_configuration
from tbotan import kalj
from tbotan.configuration import ConfigurationBatch, maxwell_boltzmann_velocities
from tbotan.md import Integrator, SimulationError, hoomd_available, make_engine

ENGINES = [
    "torch",
    pytest.param(
        "hoomd",
        marks=[
            pytest.mark.hoomd,
            pytest.mark.skipif(
                not hoomd_available(),
                reason="HOOMD-blue is not installed (conda env create -f envs/hoomd.yaml)",
            ),
        ],
    ),
]


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    return make_engine(request.param, device="cpu")


@pytest.fixture(scope="module")
def hoomd_engine():
    if not hoomd_available():
        pytest.skip("HOOMD-blue is not installed (conda env create -f envs/hoomd.yaml)")
    return make_engine("hoomd", device="cpu")


def with_velocities(conf: ConfigurationBatch, kT: float, seed: int) -> ConfigurationBatch:
    vel = [maxwell_boltzmann_velocities(conf.n_particles, kT, seed, b) for b in range(len(conf))]
    return conf.with_velocities(np.stack(vel))


def test_forces_energies_and_virial_match_reference(engine, botan_batch):
    batch = ConfigurationBatch.concatenate(
        [botan_batch.select(0), dense_random_configuration(4096, seed=3)]
    )
    result = engine.evaluate(batch)
    for b in range(batch.n_systems):
        ref = kalj.evaluate(batch.positions[b], batch.types[b], batch.box[b])
        scale = np.abs(ref.forces).max()
        assert np.abs(result.forces[b] - ref.forces).max() / scale < 1e-10
        # the shifted-force energy of Eq. 1, also for HOOMD-blue (corrected)
        np.testing.assert_allclose(
            result.per_particle_energy[b], ref.per_particle_energy, rtol=1e-10, atol=1e-12
        )
        assert result.virial[b] == pytest.approx(ref.virial, rel=1e-10)
    assert result.potential_energy[0] == pytest.approx(BOTAN_REFERENCE[1]["u"], abs=1e-5)


def test_nve_energy_drift_is_bounded(engine, liquid_256):
    sim = engine.simulation(liquid_256, Integrator(dt=0.005))
    energies = [sim.thermo().total_energy[0]]
    for _ in range(25):
        sim.run(200)
        energies.append(sim.thermo().total_energy[0])
    energies = np.array(energies)
    quarter = len(energies) // 4
    assert abs(energies[-quarter:].mean() - energies[:quarter].mean()) < 2e-4
    assert np.abs(energies - energies[0]).max() < 2e-3


def test_bussi_thermostat_gives_canonical_kinetic_energy(engine, liquid_256):
    kT, n_sys, n = 0.8, 4, liquid_256.n_particles
    conf = with_velocities(liquid_256.repeat(n_sys), kT, seed=12)
    sim = engine.simulation(conf, Integrator(dt=0.005, kT=kT, tau=0.05, seed=7))
    sim.run(100)
    kinetic = []
    for _ in range(300):
        sim.run(10)
        kinetic.append(0.5 * (sim.state().velocities ** 2).sum(axis=(1, 2)))
    kinetic = np.array(kinetic)
    dof = 3 * n - 3
    mean_ratio = kinetic.mean() / (dof * kT / 2)
    var_ratio = kinetic.var(axis=0).mean() / (dof * kT**2 / 2)
    # 1200 draws, correlated over ~1 sample: mean known to ~0.2 %, variance to ~6 %
    assert mean_ratio == pytest.approx(1.0, abs=0.012)
    assert var_ratio == pytest.approx(1.0, abs=0.25)


def test_fire_on_botan_files_reaches_the_reference_inherent_structures(engine, botan_batch):
    batch = botan_batch.select([0, 4])
    result = engine.minimize(batch)
    for b, index in enumerate((1, 5)):
        assert result.mean_force[b] < 1e-12
        assert result.energy[b] == pytest.approx(BOTAN_REFERENCE[index]["e_is"], abs=1e-4)
        assert (
            abs(result.steps[b] - BOTAN_REFERENCE[index]["fire_steps"])
            <= 0.3 * BOTAN_REFERENCE[index]["fire_steps"]
        )


def test_engines_agree_on_inherent_structures(hoomd_engine, cpu_engine, botan_batch):
    batch = botan_batch.select([1, 2, 3])
    torch_result = cpu_engine.minimize(batch)
    hoomd_result = hoomd_engine.minimize(batch)
    np.testing.assert_allclose(hoomd_result.energy, torch_result.energy, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hoomd_result.steps, torch_result.steps, rtol=0.1)


def test_seeded_replicas_agree_between_engines_before_chaos(hoomd_engine, cpu_engine, botan_batch):
    replicas = with_velocities(botan_batch.select(0).repeat(2), 0.44, seed=99)
    integrator = Integrator(dt=0.005)
    runs = {}
    for name, engine in (("torch", cpu_engine), ("hoomd", hoomd_engine)):
        sim = engine.simulation(replicas, integrator)
        sim.run(40)
        runs[name] = sim.state()
    np.testing.assert_allclose(
        runs["hoomd"].unwrapped_positions(), runs["torch"].unwrapped_positions(), rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(runs["hoomd"].velocities, runs["torch"].velocities, atol=1e-8)


def test_hoomd_runs_resume_exactly(hoomd_engine, liquid_256):
    conf = with_velocities(liquid_256.repeat(2), 0.8, seed=5)
    integrator = Integrator(dt=0.005, kT=0.8, tau=0.5, seed=3)
    straight = hoomd_engine.simulation(conf, integrator)
    straight.run(100)
    straight.run(100)
    first = hoomd_engine.simulation(conf, integrator)
    first.run(100)
    resumed = hoomd_engine.simulation(first.state(), integrator)
    resumed.run(100)
    np.testing.assert_array_equal(straight.state().positions, resumed.state().positions)


def test_hoomd_blow_up_names_the_system(hoomd_engine, liquid_256):
    pos = liquid_256.positions.copy()
    pos[0, 3] = pos[0, 4] + np.array([0.3, 0.0, 0.0])
    bad = ConfigurationBatch(
        pos, liquid_256.types, liquid_256.box, velocities=liquid_256.velocities
    )
    with pytest.raises(SimulationError, match="system 1 blew up"):
        hoomd_engine.simulation(
            ConfigurationBatch.concatenate([liquid_256, bad]), Integrator(0.005)
        )


def test_asking_for_hoomd_without_it_says_how_to_get_it(monkeypatch):
    import tbotan.md as md

    monkeypatch.setattr(md, "hoomd_available", lambda: False)
    with pytest.raises(ImportError, match="envs/hoomd.yaml"):
        md.make_engine("hoomd")
    assert md.make_engine("auto", device="cpu").name == "torch"
