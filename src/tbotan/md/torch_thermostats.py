"""Thermostats of the torch engine: the extension point of its dynamics.

A :class:`~tbotan.md.torch_engine.TorchSimulation` is velocity Verlet (the step it shares with
FIRE, ``_State.verlet_step``) followed, when ``DynamicsParameters.kT`` is set, by the
thermostat the dynamics' parameters name (``DynamicsParameters.thermostat``).  A thermostat
here is a small object built once per simulation from those parameters; after every step it
receives the (3, B, N) velocities and returns the thermostatted ones.  Adding a thermostat
(say Langevin dynamics) means writing one class with the :class:`Thermostat` interface and
registering it in :data:`THERMOSTATS` (its name is then accepted by
:class:`tbotan.md.DynamicsParameters` for this engine); nothing else changes.

Random numbers come from the counter-based streams of :mod:`tbotan.md.counter_rng`: the noise
of system b after step t is a pure function of ``(seed, stream_b, t)``, so a system's
trajectory does not depend on its batch, on where a run was split, or on a restart.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from tbotan.md import DynamicsParameters, degrees_of_freedom
from tbotan.md import torch_integrators as integ


class Thermostat(Protocol):
    """What the torch engine calls after each velocity-Verlet step."""

    def begin_run(self, n_steps: int) -> None:
        """A run of ``n_steps`` steps starts (noise may be drawn in blocks within it)."""
        ...

    def apply(
        self,
        velocities: torch.Tensor,
        step: int,
        timestep: np.ndarray,
        kinetic: torch.Tensor | None,
    ) -> torch.Tensor:
        """Velocities after the thermostat.

        Args:
            velocities: (3, B, N) velocities after step ``step`` of the run (0-based).
            timestep: (B,) int64 time step of every system after the step.
            kinetic: (B,) kinetic energies Σ v²/2 of ``velocities`` (ε) where the kernels
                computed them with the kick, else None.

        Returns:
            (3, B, N) velocities.
        """
        ...


class BussiThermostat:
    """Bussi–Donadio–Parrinello stochastic velocity rescaling (canonical NVT).

    Exact kinetic-energy update over one step (:func:`tbotan.md.torch_integrators.
    bussi_rescale`) with time constant ``DynamicsParameters.tau``, ``N_f = 3N − 3`` degrees of
    freedom (centre of mass fixed) and the noise ``R₁ ~ N(0, 1)``, ``S ~ χ²(N_f − 1)`` of
    :func:`~tbotan.md.torch_integrators.bussi_noise`, drawn :attr:`NOISE_BLOCK` steps at a
    time.  The counter of the noise used after step t is t + 1 (the step being completed).
    """

    #: Thermostat noise is drawn for this many steps at a time.
    NOISE_BLOCK = 256

    def __init__(
        self,
        integrator: DynamicsParameters,
        n_systems: int,
        n_particles: int,
        device: torch.device,
        rescale=None,
    ) -> None:
        kT = integrator.kT_per_system(n_systems)
        # (velocities, (B,) factors) -> scaled velocities, where the kernels offer it (native:
        # in place, the same products as torch's); None: torch's multiplication
        self.rescale = rescale
        if kT is None:
            raise ValueError("the Bussi thermostat needs DynamicsParameters.kT")
        self.kT = torch.as_tensor(kT, device=device, dtype=torch.float64)
        self.dt = float(integrator.dt)
        self.tau = float(integrator.tau)
        self.dof = float(degrees_of_freedom(n_particles))
        self.seed = torch.full((n_systems,), integrator.seed, device=device, dtype=torch.int64)
        self.stream = torch.as_tensor(integrator.streams_per_system(n_systems), device=device)
        self._n_steps = 0
        self._noise: tuple[torch.Tensor, torch.Tensor] | None = None

    def begin_run(self, n_steps: int) -> None:
        self._n_steps = n_steps
        self._noise = None

    def apply(self, velocities, step, timestep, kinetic):
        block = step % self.NOISE_BLOCK
        if block == 0:
            self._noise = self.noise(timestep, min(self.NOISE_BLOCK, self._n_steps - step))
        r1, chi2 = self._noise
        return integ.bussi_rescale(
            velocities,
            self.kT,
            self.dt,
            self.tau,
            self.dof,
            r1[:, block],
            chi2[:, block],
            kinetic,
            rescale=self.rescale,
        )

    def noise(self, timestep: np.ndarray, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """R₁ and χ²(N_f − 1) of the ``n_steps`` steps after ``timestep`` (B,), (B, n_steps)
        each."""
        device = self.seed.device
        start = torch.as_tensor(timestep, device=device) + 1
        counters = start[:, None] + torch.arange(n_steps, device=device)[None, :]
        b = counters.shape[0]
        seed = self.seed[:, None].expand(-1, n_steps).reshape(-1)
        stream = self.stream[:, None].expand(-1, n_steps).reshape(-1)
        r1, chi2 = integ.bussi_noise(self.dof, seed, stream, counters.reshape(-1))
        return r1.view(b, n_steps), chi2.view(b, n_steps)


#: Thermostats of the torch engine by ``DynamicsParameters.thermostat`` name.
THERMOSTATS: dict[str, type] = {"bussi": BussiThermostat}


def make_thermostat(
    integrator: DynamicsParameters,
    n_systems: int,
    n_particles: int,
    device: torch.device,
    rescale=None,
) -> Thermostat | None:
    """The thermostat ``integrator`` asks for, or None for NVE (``kT`` unset).

    ``rescale(velocities, factors)``: how the kernels scale (3, B, N) velocities by (B,)
    per-system factors, for thermostats that rescale (None: torch's multiplication).

    Its name is checked against :data:`THERMOSTATS` by ``Engine.check_integrator`` when the
    engine's ``simulation`` is created, before this runs.
    """
    if integrator.kT is None:
        return None
    cls = THERMOSTATS[integrator.thermostat]
    if rescale is not None and cls is BussiThermostat:
        return cls(integrator, n_systems, n_particles, device, rescale=rescale)
    return cls(integrator, n_systems, n_particles, device)
