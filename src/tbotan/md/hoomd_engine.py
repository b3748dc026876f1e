"""HOOMD-blue behind the :class:`~tbotan.md.Engine` interface.

HOOMD-blue (conda-forge; ``envs/hoomd.yaml``) is the trusted reference of the field.  This
engine runs every protocol of the project on it unchanged:

- forces: ``hoomd.md.pair.ForceShiftedLJ`` with ``r_cut = 2.5 σ_μν`` per pair type on a
  ``hoomd.md.nlist.Cell(buffer=skin)``;
- dynamics: ``hoomd.md.methods.ConstantVolume`` with ``thermostats.Bussi`` (NVT) or no
  thermostat (NVE), velocity Verlet, on the CPU or a GPU;
- minimisation: ``hoomd.md.minimize.FIRE(dt=dt_max)`` with ``force_tol = tol/√3`` (HOOMD's
  criterion is an RMS per degree of freedom, which implies ``mean_i |F_i| < tol``) and energy
  and angular-momentum tolerances loose enough that the force decides; every result is then
  checked with the project's own float64 evaluator.

Energies: ``ForceShiftedLJ`` reports ``u(r) − (r − r_c) u'(r_c)`` without ``−u(r_c)``; every
energy this engine returns is corrected to the shifted-force energy of Eq. 1
(:func:`tbotan.physics.kalj.cutoff_shift_correction`), never HOOMD's raw energy.

Batches run one system after another on one ``hoomd.Simulation`` per batch, swapping
snapshots.  Velocities come from the configurations (the project's own seeded RNG), so
replicas are identical across engines.  HOOMD-blue's thermostat noise is a function of its
16-bit seed and its global time step: system b of a batch uses the seed
``hoomd_seed(seed, stream_b)`` (a 16-bit hash), and the global time step of a batch starts at
the sum of its systems' step counters and advances by B·n per ``run(n)``, so a run resumed
from saved states repeats an uninterrupted one.

Works with HOOMD-blue 4.x and later (only APIs common to these versions are used).
"""

from __future__ import annotations

import hashlib

import numpy as np

from tbotan.errors import ConfigError, EnvironmentProblem
from tbotan.md import (
    BatchEvaluation,
    DynamicsParameters,
    FireParameters,
    MinimizeResult,
    SimulationError,
)
from tbotan.md.engine_common import SerialEngine, SerialSimulation, require_velocities
from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch

_TYPES = list(kalj.TYPE_NAMES)


def _import_hoomd():
    try:
        import hoomd
        import hoomd.md  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "HOOMD-blue is not installed: create the conda environment envs/hoomd.yaml "
            "(conda env create -f envs/hoomd.yaml) or use engine 'torch'"
        ) from exc
    return hoomd


def hoomd_seed(seed: int, stream: int) -> int:
    """HOOMD-blue's 16-bit simulation seed for system ``stream`` of a run seeded ``seed``."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(stream)}".encode(), digest_size=2).digest()
    return int.from_bytes(digest, "little")


class HoomdEngine(SerialEngine):
    """KALJ on HOOMD-blue (see the module documentation).

    Args:
        device: ``'auto'`` (a GPU when the build supports one and it is present), ``'cpu'`` or
            ``'cuda'``.
        skin: neighbour-list buffer (σ_AA), the same meaning as the torch engine's skin.
        limits: ``max_potential_energy``, ``max_temperature``, ``min_distance``: blow-up
            thresholds, as in the torch engine (:class:`~tbotan.md.engine_common.SerialEngine`;
            there is no ``check_interval``).
        notice_level: verbosity of HOOMD-blue's notices (``hoomd.device`` ``notice_level``).
    """

    name = "hoomd"

    def __init__(
        self,
        device: str = "auto",
        skin: float = 0.3,
        notice_level: int = 1,
        **limits: float,
    ) -> None:
        self.hoomd = _import_hoomd()
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        super().__init__(skin, **limits)
        self.requested_device = device
        self.notice_level = int(notice_level)
        self.device = self._make_device(device)

    def _make_device(self, device: str):
        hoomd = self.hoomd
        gpu_build = bool(getattr(hoomd.version, "gpu_enabled", False))
        if device == "cuda" and not gpu_build:
            raise EnvironmentProblem(
                "device 'cuda' was requested but this HOOMD-blue build has no GPU"
            )
        if device in ("cuda", "auto") and gpu_build:
            try:
                return hoomd.device.GPU(notice_level=self.notice_level)
            except RuntimeError:
                if device == "cuda":
                    raise
        return hoomd.device.CPU(notice_level=self.notice_level)

    @property
    def device_kind(self) -> str:
        return "cuda" if isinstance(self.device, self.hoomd.device.GPU) else "cpu"

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "hoomd_version": self.hoomd.version.version,
            "device": self.device_kind,
            "precision": "float64" if not _single_precision(self.hoomd) else "float32",
            "skin": self.skin,
        }

    # ------------------------------------------------------------------ building blocks
    def _snapshot(self, conf: ConfigurationBatch, b: int, velocities: bool = True):
        snap = self.hoomd.Snapshot(self.device.communicator)
        if snap.communicator.rank == 0:
            box = conf.box[b]
            snap.configuration.box = [*box.tolist(), 0.0, 0.0, 0.0]
            snap.particles.N = conf.n_particles
            snap.particles.types = _TYPES
            snap.particles.typeid[:] = conf.types[b].astype(np.uint32)
            snap.particles.position[:] = conf.positions[b] - box / 2.0
            snap.particles.image[:] = conf.images[b]
            snap.particles.mass[:] = kalj.MASS
            if velocities and conf.velocities is not None:
                snap.particles.velocity[:] = conf.velocities[b]
        return snap

    def _read_snapshot(self, sim, conf: ConfigurationBatch, b: int) -> None:
        """Copy positions, images and velocities of the simulation into system b of conf."""
        snap = sim.state.get_snapshot()
        box = conf.box[b]
        conf.positions[b] = np.asarray(snap.particles.position, dtype=np.float64) + box / 2.0
        conf.images[b] = np.asarray(snap.particles.image)
        if conf.velocities is not None:
            conf.velocities[b] = np.asarray(snap.particles.velocity, dtype=np.float64)

    def _new_simulation(self, conf: ConfigurationBatch, timestep: int = 0):
        """One hoomd.Simulation holding system 0 of ``conf``, with the KALJ pair force."""
        hoomd = self.hoomd
        sim = hoomd.Simulation(device=self.device, seed=0)
        sim.timestep = int(timestep)
        sim.create_state_from_snapshot(self._snapshot(conf, 0))
        nlist = hoomd.md.nlist.Cell(buffer=self.skin)
        lj = hoomd.md.pair.ForceShiftedLJ(nlist=nlist, default_r_cut=float(kalj.max_cutoff()))
        for ti, a in enumerate(_TYPES):
            for tj, c in enumerate(_TYPES):
                if tj < ti:
                    continue
                lj.params[(a, c)] = dict(
                    epsilon=float(kalj.EPSILON[ti, tj]), sigma=float(kalj.SIGMA[ti, tj])
                )
                lj.r_cut[(a, c)] = float(kalj.R_CUT[ti, tj])
        return sim, lj

    def _check_system(self, conf: ConfigurationBatch, b: int, step: int) -> None:
        """Blow-up checks of system b with the project's evaluator."""
        result = None

        def evaluated():
            nonlocal result
            if result is None:
                result = kalj.evaluate(conf.positions[b], conf.types[b], conf.box[b])
            return result

        self.check_one_system(
            conf,
            b,
            step,
            lambda: evaluated().min_distance_over_sigma,
            lambda: evaluated().total_potential_energy / conf.n_particles,
        )

    # ------------------------------------------------------------------ public API
    def evaluate(self, configurations: ConfigurationBatch) -> BatchEvaluation:
        conf = configurations.with_velocities(None)
        sim, lj = self._new_simulation(conf)
        sim.always_compute_pressure = True
        sim.operations.integrator = self.hoomd.md.DynamicsParameters(dt=0.005, forces=[lj])
        n_sys, n = conf.n_systems, conf.n_particles
        energies, forces, virial = np.zeros((n_sys, n)), np.zeros((n_sys, n, 3)), np.zeros(n_sys)
        for b in range(n_sys):
            if b:
                sim.state.set_snapshot(self._snapshot(conf, b))
            sim.run(0)
            raw = np.asarray(lj.energies, dtype=np.float64)
            energies[b] = raw + kalj.cutoff_shift_correction(
                conf.positions[b], conf.types[b], conf.box[b]
            )
            forces[b] = np.asarray(lj.forces, dtype=np.float64)
            w = np.asarray(lj.virials, dtype=np.float64)
            virial[b] = (w[:, 0] + w[:, 3] + w[:, 5]).sum()
        return BatchEvaluation(per_particle_energy=energies, forces=forces, virial=virial)

    def simulation(self, configurations: ConfigurationBatch, integrator: DynamicsParameters):
        self.check_integrator(integrator)
        return HoomdSimulation(self, configurations, integrator)

    def minimize(
        self, configurations: ConfigurationBatch, fire: FireParameters | None = None
    ) -> MinimizeResult:
        fire = fire or FireParameters()
        hoomd = self.hoomd
        conf = configurations.with_velocities(np.zeros_like(configurations.positions))
        sim, lj = self._new_simulation(conf)
        minimizer = hoomd.md.minimize.FIRE(
            dt=fire.dt_max,
            force_tol=fire.force_tolerance / np.sqrt(3.0),
            angmom_tol=1e30,
            energy_tol=1e30,
            forces=[lj],
            methods=[hoomd.md.methods.ConstantVolume(filter=hoomd.filter.All())],
            min_steps_adapt=fire.n_min,
            finc_dt=fire.f_inc,
            fdec_dt=fire.f_dec,
            alpha_start=fire.alpha_start,
            fdec_alpha=fire.f_alpha,
            min_steps_conv=fire.min_steps,
        )
        sim.operations.integrator = minimizer
        watcher = _ConvergenceWatcher(minimizer)
        sim.operations.writers.append(
            hoomd.write.CustomWriter(action=watcher, trigger=hoomd.trigger.Periodic(1))
        )
        n_sys = conf.n_systems
        steps, energy, mean_force = np.zeros(n_sys, np.int64), np.zeros(n_sys), np.zeros(n_sys)
        block = 100
        for b in range(n_sys):
            if b:
                sim.state.set_snapshot(self._snapshot(conf, b))
            sim.run(0)  # attach (first system) and compute forces
            minimizer.reset()
            minimizer.dt = fire.initial_dt  # reset() sets dt_max/10; see FireParameters
            watcher.start(sim.timestep)
            while watcher.converged_after is None:
                if sim.timestep - watcher.started >= fire.max_steps:
                    raise SimulationError(
                        f"FIRE (HOOMD-blue) did not converge to mean |F| < "
                        f"{fire.force_tolerance:g} within {fire.max_steps} steps for system {b}"
                    )
                sim.run(min(block, fire.max_steps - (sim.timestep - watcher.started)))
            self._read_snapshot(sim, conf, b)
            mean_force[b], energy[b] = self.checked_minimum(
                conf,
                b,
                fire,
                "system {b}: HOOMD-blue's FIRE stopped at mean |F| = {mean_force:.3g}, "
                f"not below {fire.force_tolerance:g} (checked with the float64 evaluator)",
            )
            steps[b] = watcher.converged_after
        return MinimizeResult(
            configurations=ConfigurationBatch(
                positions=conf.positions,
                types=conf.types,
                box=conf.box,
                images=conf.images,
                timestep=configurations.timestep,
            ),
            energy=energy,
            steps=steps,
            mean_force=mean_force,
        )


class _ConvergenceWatcher:
    """A HOOMD-blue custom action recording after how many steps FIRE reported convergence."""

    def __new__(cls, minimizer):
        import hoomd

        class Watcher(hoomd.custom.Action):
            def __init__(self, minimizer):
                super().__init__()
                self.minimizer = minimizer
                self.started = 0
                self.converged_after = None

            def start(self, timestep):
                self.started = int(timestep)
                self.converged_after = None

            def act(self, timestep):
                if self.converged_after is None and self.minimizer.converged:
                    self.converged_after = int(timestep) - self.started

        return Watcher(minimizer)


def _single_precision(hoomd) -> bool:
    return bool(getattr(hoomd.version, "floating_point_precision", (64,))[0] == 32)


class HoomdSimulation(SerialSimulation):
    """A batch integrated by HOOMD-blue one system after another on one ``hoomd.Simulation``."""

    def __init__(
        self, engine: HoomdEngine, conf: ConfigurationBatch, integrator: DynamicsParameters
    ):
        require_velocities(conf)
        hoomd = engine.hoomd
        self.engine = engine
        self.integrator = integrator
        self._conf = conf.copy()
        n_sys = conf.n_systems
        self._kT = integrator.kT_per_system(n_sys)
        self._seeds = [hoomd_seed(integrator.seed, s) for s in integrator.streams_per_system(n_sys)]
        for b in range(n_sys):
            engine._check_system(self._conf, b, int(self._conf.timestep[b]))
        self._sim, lj = engine._new_simulation(self._conf, timestep=int(conf.timestep.sum()))
        if self._kT is None:
            self._thermostat = None
        else:
            self._thermostat = hoomd.md.methods.thermostats.Bussi(
                kT=float(self._kT[0]), tau=float(integrator.tau)
            )
        method = hoomd.md.methods.ConstantVolume(
            filter=hoomd.filter.All(), thermostat=self._thermostat
        )
        self._sim.operations.integrator = hoomd.md.DynamicsParameters(
            dt=float(integrator.dt), methods=[method], forces=[lj]
        )

    def run(self, n_steps: int) -> None:
        if n_steps < 0:
            raise ValueError(f"n_steps must be ≥ 0, got {n_steps}")
        engine, sim = self.engine, self._sim
        for b in range(self._conf.n_systems):
            # always reload: a run is then a pure function of the saved state (and the global
            # time step), exactly as in a fresh object created from a checkpoint
            sim.state.set_snapshot(engine._snapshot(self._conf, b))
            sim.seed = self._seeds[b]
            if self._thermostat is not None:
                self._thermostat.kT = float(self._kT[b])
            try:
                sim.run(n_steps)
            except RuntimeError as exc:
                raise SimulationError(
                    f"system {b} failed in HOOMD-blue between steps {int(self._conf.timestep[b])} "
                    f"and {int(self._conf.timestep[b]) + n_steps}: {exc}"
                ) from exc
            engine._read_snapshot(sim, self._conf, b)
            self._conf.timestep[b] += n_steps
            engine._check_system(self._conf, b, int(self._conf.timestep[b]))

    def _evaluate(self):
        return self.engine.evaluate(self._conf)
