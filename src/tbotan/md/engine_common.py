"""What the three KALJ engines share, written once.

- :class:`BlowupLimits`: the blow-up thresholds every engine checks (U/N, kinetic temperature,
  closest approach over σ_μν), validated in one place.
- :func:`require_velocities`: the clear error for dynamics started without velocities.
- :class:`SerialEngine` and :class:`SerialSimulation`: the body of the engines that run a batch
  one system after another (HOOMD-blue, LAMMPS): the per-system blow-up check, the float64
  check of a minimised system, and a simulation's timestep, state and thermodynamics.

The batched torch engine uses the first two; the engine-specific parts (how a system is loaded,
run and read back) stay in ``hoomd_engine.py``, ``lammps_engine.py`` and ``torch_engine.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbotan.errors import ConfigError
from tbotan.md import (
    MAX_POTENTIAL_ENERGY,
    MAX_TEMPERATURE,
    MIN_DISTANCE,
    BatchEvaluation,
    Engine,
    FireParameters,
    Simulation,
    SimulationError,
    Thermo,
    check_system_state,
    kinetic_temperature,
)
from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch


@dataclass(frozen=True)
class BlowupLimits:
    """When a system counts as blown up.

    Attributes:
        max_potential_energy: U/N above which (ε).
        max_temperature: kinetic temperature above which.
        min_distance: smallest allowed r_ij / σ_μν, in (0, 1).
    """

    max_potential_energy: float = MAX_POTENTIAL_ENERGY
    max_temperature: float = MAX_TEMPERATURE
    min_distance: float = MIN_DISTANCE

    def __post_init__(self) -> None:
        if not 0 < self.min_distance < 1:
            raise ConfigError(f"min_distance must lie in (0, 1) σ_μν, got {self.min_distance}")
        for name in ("max_potential_energy", "max_temperature", "min_distance"):
            object.__setattr__(self, name, float(getattr(self, name)))


def set_limits(
    engine: Engine,
    skin: float,
    max_potential_energy: float = MAX_POTENTIAL_ENERGY,
    max_temperature: float = MAX_TEMPERATURE,
    min_distance: float = MIN_DISTANCE,
) -> None:
    """Validate and store an engine's skin (σ_AA, positive) and blow-up limits as its
    attributes ``skin``, ``limits`` (:class:`BlowupLimits`) and ``max_potential_energy``,
    ``max_temperature``, ``min_distance``."""
    if not skin > 0:
        raise ConfigError(f"skin must be positive, got {skin}")
    engine.skin = float(skin)
    engine.limits = BlowupLimits(max_potential_energy, max_temperature, min_distance)
    engine.max_potential_energy = engine.limits.max_potential_energy
    engine.max_temperature = engine.limits.max_temperature
    engine.min_distance = engine.limits.min_distance


def require_velocities(conf: ConfigurationBatch) -> None:
    """Raise ValueError if ``conf`` carries no velocities (dynamics needs them)."""
    if conf.velocities is None:
        raise ValueError(
            "the configurations carry no velocities: draw them first "
            "(tbotan.physics.configurations.maxwell_boltzmann_velocities)"
        )


class SerialEngine(Engine):
    """An engine that runs the systems of a batch one after another (HOOMD-blue, LAMMPS).

    Args:
        skin: neighbour-list buffer (σ_AA).
        limits: ``max_potential_energy``, ``max_temperature``, ``min_distance``: the blow-up
            thresholds (:class:`BlowupLimits`), checked with the float64 evaluator after every
            ``run`` call, per system.
    """

    limits: BlowupLimits

    def __init__(self, skin: float, **limits: float) -> None:
        set_limits(self, skin, **limits)

    def check_one_system(
        self, conf: ConfigurationBatch, b: int, step: int, closest, energy_per_particle
    ) -> None:
        """Blow-up checks of system b of ``conf`` at ``step`` (see
        :func:`tbotan.md.check_system_state` for ``closest`` and ``energy_per_particle``)."""
        check_system_state(
            b,
            step,
            conf.positions[b],
            None if conf.velocities is None else conf.velocities[b],
            closest,
            energy_per_particle,
            min_distance=self.limits.min_distance,
            max_potential_energy=self.limits.max_potential_energy,
            max_temperature=self.limits.max_temperature,
        )

    @staticmethod
    def checked_minimum(
        conf: ConfigurationBatch, b: int, fire: FireParameters, failure: str
    ) -> tuple[float, float]:
        """(mean |F|, U/N) of minimised system b, from the float64 evaluator; SimulationError
        (``failure`` formatted with ``b`` and ``mean_force``) where mean |F| is not below the
        tolerance."""
        result = kalj.evaluate(conf.positions[b], conf.types[b], conf.box[b])
        mean_force = float(np.linalg.norm(result.forces, axis=1).mean())
        if not mean_force < fire.force_tolerance:
            raise SimulationError(failure.format(b=b, mean_force=mean_force))
        return mean_force, result.total_potential_energy / conf.n_particles


class SerialSimulation(Simulation):
    """A batch integrated one system after another: the systems' state lives in ``_conf`` and
    subclasses provide :meth:`_evaluate` (energies and virial of ``_conf``)."""

    _conf: ConfigurationBatch

    def _evaluate(self) -> BatchEvaluation:
        raise NotImplementedError

    @property
    def timestep(self) -> np.ndarray:
        return self._conf.timestep.copy()

    def state(self) -> ConfigurationBatch:
        return self._conf.copy()

    def thermo(self) -> Thermo:
        conf = self._conf
        evaluation = self._evaluate()
        n = conf.n_particles
        kinetic = 0.5 * (conf.velocities**2).sum(axis=(1, 2))
        return Thermo(
            potential_energy_per_particle=evaluation.potential_energy_per_particle,
            kinetic_energy_per_particle=kinetic / n,
            temperature=kinetic_temperature(2.0 * kinetic, n),
            pressure=(2.0 * kinetic + evaluation.virial) / (3.0 * conf.volume),
        )
