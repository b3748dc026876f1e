"""Dynamics of the torch engine: conservation, reversibility, thermostat, batching, blow-ups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tbotan.md import DynamicsParameters, SimulationError
from tbotan.md import torch_integrators as integ
from tbotan.md.torch_engine import TorchEngine
from tbotan.physics.configurations import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
)


def with_fresh_velocities(conf: ConfigurationBatch, kT: float, seed: int) -> ConfigurationBatch:
    vel = np.stack(
        [maxwell_boltzmann_velocities(conf.n_particles, kT, seed, b) for b in range(conf.n_systems)]
    )
    return conf.with_velocities(vel)


def nve_energies(engine, conf, dt, n_samples, steps_between):
    sim = engine.simulation(conf, DynamicsParameters(dt=dt))
    energies = [sim.thermo().total_energy_per_particle[0]]
    for _ in range(n_samples):
        sim.run(steps_between)
        energies.append(sim.thermo().total_energy_per_particle[0])
    return np.array(energies), sim


def test_nve_conserves_energy_over_ten_thousand_steps(cpu_engine, liquid_256):
    energies, sim = nve_energies(cpu_engine, liquid_256, 0.005, 500, 20)
    assert sim.timestep[0] - liquid_256.timestep[0] == 10_000
    assert sim.thermo().temperature[0] == pytest.approx(0.8, rel=0.25)
    # (U + K)/N fluctuates by ~2.5e-4 at N = 256, dt = 0.005 (shadow-Hamiltonian wobble);
    # a drift would separate the first and last quarter's means (each known to ~2e-5)
    quarter = len(energies) // 4
    assert abs(energies[-quarter:].mean() - energies[:quarter].mean()) < 1e-4
    assert np.abs(energies - energies[0]).max() < 2e-3


def test_energy_fluctuations_scale_as_dt_squared(cpu_engine, liquid_256):
    # velocity Verlet is second order: halving dt divides the fluctuation of H by four
    coarse, _ = nve_energies(cpu_engine, liquid_256, 0.005, 100, 10)
    fine, _ = nve_energies(cpu_engine, liquid_256, 0.0025, 100, 20)
    assert 3.0 < coarse.std() / fine.std() < 5.0


def test_velocity_verlet_is_time_reversible(cpu_engine, liquid_256):
    sim = cpu_engine.simulation(liquid_256, DynamicsParameters(dt=0.005))
    sim.run(600)
    mid = sim.state()
    back = cpu_engine.simulation(mid.with_velocities(-mid.velocities), DynamicsParameters(dt=0.005))
    back.run(600)
    end = back.state()
    np.testing.assert_allclose(
        end.unwrapped_positions(), liquid_256.unwrapped_positions(), atol=1e-7
    )
    np.testing.assert_allclose(-end.velocities, liquid_256.velocities, atol=1e-7)


def test_bussi_update_alone_samples_the_gamma_distribution_of_kinetic_energy():
    # without forces, K follows Bussi's stochastic process exactly; its stationary law is
    # Gamma(N_f/2, kT): mean N_f kT/2, variance N_f kT²/2, skewness 2 / sqrt(N_f/2)
    n_sys, n, kT, dt, tau = 400, 20, 0.7, 0.005, 0.02
    dof = 3.0 * n - 3.0
    gen = torch.Generator().manual_seed(0)
    vel = 0.3 * torch.randn((3, n_sys, n), generator=gen, dtype=torch.float64)
    seed = torch.full((n_sys,), 11, dtype=torch.int64)
    stream = torch.arange(n_sys, dtype=torch.int64)
    kT_t = torch.full((n_sys,), kT, dtype=torch.float64)
    samples = []
    for step in range(1, 3001):
        counter = torch.full((n_sys,), step, dtype=torch.int64)
        r1, chi2 = integ.bussi_noise(dof, seed, stream, counter)
        vel = integ.bussi_rescale(vel, kT_t, dt, tau, dof, r1, chi2)
        if step > 200 and step % 10 == 0:
            samples.append(integ.kinetic_energy(vel).numpy())
    k = np.concatenate(samples)  # ~112 000 nearly independent draws
    assert k.mean() == pytest.approx(dof * kT / 2, rel=0.005)
    assert k.var() == pytest.approx(dof * kT**2 / 2, rel=0.03)
    skew = np.mean((k - k.mean()) ** 3) / k.std() ** 3
    assert skew == pytest.approx(2 / np.sqrt(dof / 2), abs=0.05)


def test_bussi_md_samples_canonical_kinetic_energy(cpu_engine, liquid_256):
    kT, n_sys = 0.8, 16
    conf = with_fresh_velocities(liquid_256.repeat(n_sys), kT, seed=8)
    sim = cpu_engine.simulation(conf, DynamicsParameters(dt=0.005, kT=kT, tau=0.05, seed=5))
    sim.run(200)
    samples = []
    for _ in range(250):
        sim.run(10)
        samples.append(sim.thermo().kinetic_energy_per_particle * conf.n_particles)
    kinetic = np.array(samples)  # (time, systems), total K
    dof = 3 * conf.n_particles - 3
    # canonical: K ~ Gamma(dof/2, kT); error bars from the scatter of the 16 systems
    mean_ratio = kinetic.mean(axis=0) / (dof * kT / 2)
    var_ratio = kinetic.var(axis=0) / (dof * kT**2 / 2)
    for ratios in (mean_ratio, var_ratio):
        err = ratios.std(ddof=1) / np.sqrt(n_sys)
        assert abs(ratios.mean() - 1.0) < 4 * err
    assert var_ratio.std(ddof=1) / np.sqrt(n_sys) < 0.06  # the check resolves ~ 20 % errors


def test_system_alone_and_inside_a_batch_follow_the_same_trajectory(cpu_engine, liquid_256):
    others = with_fresh_velocities(liquid_256.repeat(3), 0.8, seed=2)
    batch = ConfigurationBatch.concatenate([others.select(0), liquid_256, others.select(1)])
    integ_batch = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=9, streams=np.array([4, 7, 5]))
    integ_alone = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=9, streams=np.array([7]))
    sim_b = cpu_engine.simulation(batch, integ_batch)
    sim_a = cpu_engine.simulation(liquid_256, integ_alone)
    sim_b.run(400)
    sim_a.run(400)
    np.testing.assert_allclose(
        sim_b.state().unwrapped_positions()[1],
        sim_a.state().unwrapped_positions()[0],
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("n", [400, 1000])  # the demo's and the reduced study's N
def test_system_alone_and_inside_a_batch_of_48_are_bit_identical(cpu_engine, n):
    """The batch paths of the small systems (all-pairs half lists at N = 400, the cell runs at
    N = 1000; per-system rebuilds and force tasks): a system's trajectory inside a batch of 48
    on two threads is its trajectory alone on one thread, bit for bit, through several
    neighbour-list rebuilds."""
    start = random_configuration(n, seed=5)
    batch = with_fresh_velocities(start.repeat(48), 1.2, seed=8)
    k = 17
    streams = np.arange(48) + 100
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        sim_b = cpu_engine.simulation(
            batch, DynamicsParameters(dt=0.004, kT=1.2, tau=0.5, seed=3, streams=streams)
        )
        sim_b.run(60)
        torch.set_num_threads(1)
        sim_a = cpu_engine.simulation(
            batch.select(k),
            DynamicsParameters(dt=0.004, kT=1.2, tau=0.5, seed=3, streams=streams[[k]]),
        )
        sim_a.run(60)
    finally:
        torch.set_num_threads(threads)
    in_batch, alone = sim_b.state(), sim_a.state()
    assert not np.array_equal(in_batch.positions[k], in_batch.positions[k + 1])  # distinct
    np.testing.assert_array_equal(in_batch.unwrapped_positions()[k], alone.unwrapped_positions()[0])
    np.testing.assert_array_equal(in_batch.velocities[k], alone.velocities[0])


def test_split_runs_reproduce_an_uninterrupted_sequence(cpu_engine, liquid_256):
    integrator = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=1)
    one = cpu_engine.simulation(liquid_256, integrator)
    one.run(150)
    one.run(150)
    first = cpu_engine.simulation(liquid_256, integrator)
    first.run(150)
    resumed = cpu_engine.simulation(first.state(), integrator)  # e.g. after a checkpoint
    resumed.run(150)
    np.testing.assert_array_equal(one.state().positions, resumed.state().positions)
    np.testing.assert_array_equal(one.state().velocities, resumed.state().velocities)


def test_neighbor_list_never_misses_a_pair_during_a_long_run(liquid_256):
    engine = TorchEngine(device="cpu", verify_neighbors=True, check_interval=7, skin=0.2)
    conf = with_fresh_velocities(liquid_256.repeat(2), 1.5, seed=4)
    sim = engine.simulation(conf, DynamicsParameters(dt=0.005, kT=1.5, tau=0.2, seed=2))
    sim.run(1500)  # raises SimulationError if a pair inside r_c were ever missing


def test_unwrapped_positions_follow_particles_across_the_boundary(cpu_engine, liquid_256):
    sim = cpu_engine.simulation(liquid_256, DynamicsParameters(dt=0.005))
    sim.run(400)
    state = sim.state()
    assert np.abs(state.images).max() >= 1  # some particles crossed the box
    displacement = state.unwrapped_positions() - liquid_256.unwrapped_positions()
    assert np.abs(displacement).max() < 3.0  # no jumps by a box length


def test_overlapping_start_is_reported_with_system_and_particles(cpu_engine, liquid_256):
    pos = liquid_256.positions.copy()
    pos[0, 5] = pos[0, 9] + 0.05
    bad = ConfigurationBatch(
        pos, liquid_256.types, liquid_256.box, velocities=liquid_256.velocities
    )
    batch = ConfigurationBatch.concatenate([liquid_256, bad])
    with pytest.raises(SimulationError, match=r"system 1 .*overlap.*particles 5 and 9"):
        cpu_engine.simulation(batch, DynamicsParameters(dt=0.005))


def test_blow_up_stops_with_system_step_and_reason(liquid_256):
    engine = TorchEngine(device="cpu", check_interval=10)
    hot = with_fresh_velocities(liquid_256, 0.8, seed=1)
    hot = hot.with_velocities(hot.velocities * 30.0)  # T ≈ 700
    batch = ConfigurationBatch.concatenate([liquid_256, hot])
    sim = engine.simulation(batch, DynamicsParameters(dt=0.005))
    with pytest.raises(SimulationError, match=r"system 1 blew up at step \d+"):
        sim.run(200)


def test_bad_integrator_and_configuration_input_fail_clearly(cpu_engine, liquid_256):
    with pytest.raises(ValueError, match="dt must be positive"):
        DynamicsParameters(dt=0.0)
    with pytest.raises(ValueError, match="kT must be positive"):
        DynamicsParameters(dt=0.005, kT=-1.0)
    with pytest.raises(ValueError, match="no velocities"):
        cpu_engine.simulation(liquid_256.with_velocities(None), DynamicsParameters(dt=0.005))
    with pytest.raises(ValueError, match=r"kT has shape \(3,\)"):
        cpu_engine.simulation(liquid_256, DynamicsParameters(dt=0.005, kT=np.ones(3)))
    with pytest.raises(TypeError, match="ConfigurationBatch"):
        cpu_engine.simulation(liquid_256.positions, DynamicsParameters(dt=0.005))


def test_simulation_never_modifies_its_input_configuration(cpu_engine, liquid_256):
    # a state returned by the engine holds strided views; feeding it back must copy
    state = cpu_engine.simulation(liquid_256, DynamicsParameters(dt=0.005)).state()
    before = state.copy()
    sim = cpu_engine.simulation(state, DynamicsParameters(dt=0.005))
    sim.run(50)
    np.testing.assert_array_equal(state.positions, before.positions)
    np.testing.assert_array_equal(state.velocities, before.velocities)
    assert state.positions.flags.c_contiguous


class _IsokineticThermostat:
    """A thermostat written against the extension interface only: rescale to exactly kT."""

    def __init__(self, integrator, n_systems, n_particles, device):
        self.kT = float(integrator.kT)
        self.dof = 3.0 * n_particles - 3.0

    def begin_run(self, n_steps):
        pass

    def apply(self, velocities, step, timestep, kinetic):
        k = integ.kinetic_energy(velocities).double() if kinetic is None else kinetic.double()
        scale = torch.sqrt(0.5 * self.dof * self.kT / k).to(velocities.dtype)
        return velocities * scale.view(1, -1, 1)


def test_a_thermostat_registered_in_one_place_drives_the_engine(
    cpu_engine, liquid_256, monkeypatch
):
    from tbotan.md import torch_thermostats

    with pytest.raises(ValueError, match="no thermostat 'isokinetic'.*bussi"):
        cpu_engine.simulation(
            liquid_256, DynamicsParameters(dt=0.005, kT=0.6, thermostat="isokinetic")
        )
    monkeypatch.setitem(torch_thermostats.THERMOSTATS, "isokinetic", _IsokineticThermostat)
    assert "isokinetic" in cpu_engine.thermostats
    sim = cpu_engine.simulation(
        liquid_256, DynamicsParameters(dt=0.005, kT=0.6, thermostat="isokinetic")
    )
    sim.run(50)
    # the kinetic temperature is held at exactly kT after every step; the liquid started at 0.8
    assert sim.thermo().temperature[0] == pytest.approx(0.6, rel=1e-12)
    # NVE (kT unset) ignores the thermostat name
    cpu_engine.simulation(liquid_256, DynamicsParameters(dt=0.005, thermostat="isokinetic")).run(5)


def test_bussi_noise_blocks_do_not_depend_on_where_a_run_is_split(cpu_engine, liquid_256):
    """Runs of 300 + 400 steps cross the 256-step noise blocks differently from one of 700.

    The second run starts with a fresh neighbour list (pair order, so rounding, differ at the
    1e-11 level); noise drawn at the wrong counters would differ at order one."""
    integrator = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=4)
    one = cpu_engine.simulation(liquid_256, integrator)
    one.run(700)
    two = cpu_engine.simulation(liquid_256, integrator)
    two.run(300)
    two.run(400)
    np.testing.assert_allclose(one.state().velocities, two.state().velocities, rtol=0, atol=1e-8)
