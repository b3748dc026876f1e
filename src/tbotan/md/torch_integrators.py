"""Integrators as small pure functions over (3, B, N) tensors.

Velocity Verlet is split in two halves around the force evaluation (the neighbour-list check
sits between them); the Bussi thermostat is a per-system velocity rescaling after each full
step; FIRE's velocity mixing and step-size control are per-system tensor updates.  Masses are
1 (KALJ).  ``dt`` is a (B,) tensor so that FIRE can use a different step per system.
"""

from __future__ import annotations

import math

import torch

from tbotan.md import counter_rng

#: Marsaglia–Tsang candidates drawn per thermostat step; P(all rejected) < 1e-30 for N ≥ 8.
_GAMMA_CANDIDATES = 8


def _per_system(x: torch.Tensor) -> torch.Tensor:
    """View a (B,) tensor so that it broadcasts against (3, B, N)."""
    return x.view(1, -1, 1)


def kick_drift(coords, velocities, forces, dt):
    """First half of velocity Verlet: ``v += dt/2 F``; ``r += dt v``.  Returns (coords, v)."""
    h = _per_system(dt)
    velocities = velocities + 0.5 * h * forces
    return coords + h * velocities, velocities


def kick(velocities, forces, dt):
    """Second half of velocity Verlet: ``v += dt/2 F``."""
    return velocities + 0.5 * _per_system(dt) * forces


def per_system_sum(x: torch.Tensor) -> torch.Tensor:
    """(B,) sums of a (3, B, N) field over components and particles.

    The components are added first and each system's N values are then reduced along the
    contiguous last axis, so a system's sum is computed in the same order whatever the batch
    size (bit-identical results alone and inside a batch).
    """
    return x.sum(0).sum(-1)


def kinetic_energy(velocities: torch.Tensor) -> torch.Tensor:
    """(B,) total kinetic energy ``Σ v²/2`` (mass 1)."""
    return 0.5 * per_system_sum(velocities * velocities)


def chi_square(
    dof: float, seed: torch.Tensor, stream: torch.Tensor, counter: torch.Tensor, dtype
) -> torch.Tensor:
    """(B,) χ² variates with ``dof`` degrees of freedom (Marsaglia–Tsang gamma sampler).

    χ²_k = 2 Γ(k/2, 1).  Uses :data:`_GAMMA_CANDIDATES` proposals per system and takes the
    first accepted; the acceptance rate exceeds 95 % for k ≥ 2, so all proposals being rejected
    does not happen in practice (then the last proposal is used).
    """
    shape = 0.5 * dof
    boost = shape < 1.0  # Γ(a) = Γ(a+1) U^(1/a) for a < 1
    a = shape + 1.0 if boost else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    m = _GAMMA_CANDIDATES
    x = counter_rng.normal(seed, stream, counter, m, torch.float64)
    u = counter_rng.uniform(seed, stream + (1 << 40), counter, m + 1, torch.float64)
    v = (1.0 + c * x) ** 3
    log_v = torch.log(torch.clamp(v, min=1e-300))
    accept = (v > 0) & (torch.log(u[:, :m]) < 0.5 * x * x + d - d * v + d * log_v)
    accept[:, -1] = True
    first = torch.argmax(accept.to(torch.int8), dim=1, keepdim=True)
    gamma = d * torch.gather(torch.clamp(v, min=0.0), 1, first).squeeze(1)
    if boost:
        gamma = gamma * u[:, m] ** (1.0 / shape)
    return (2.0 * gamma).to(dtype)


def bussi_noise(
    dof: float, seed: torch.Tensor, stream: torch.Tensor, counter: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random numbers of one Bussi step: ``R₁ ~ N(0, 1)`` and ``S ~ χ²(N_f − 1)``.

    Args:
        dof: N_f.
        seed, stream, counter: (M,) int64 inputs of the counter-based RNG (one per draw).

    Returns:
        (R₁, S), two (M,) float64 tensors.
    """
    r1 = counter_rng.normal(seed, stream, counter, 1, torch.float64)[:, 0]
    s = chi_square(dof - 1.0, seed, stream + (1 << 41), counter, torch.float64)
    return r1, s


def bussi_rescale(
    velocities: torch.Tensor,
    kT: torch.Tensor,
    dt: float,
    tau: float,
    dof: float,
    r1: torch.Tensor,
    chi2: torch.Tensor,
    kinetic: torch.Tensor | None = None,
    rescale=None,
) -> torch.Tensor:
    """Bussi–Donadio–Parrinello stochastic velocity rescaling over one step ``dt``.

    Exact update of the kinetic energy (J. Chem. Phys. 126, 014101 (2007), Eq. A7):
    ``K' = c K + (1−c) K_t (R₁² + S)/N_f + 2 R₁ sqrt(c (1−c) K K_t / N_f)``, with
    ``c = exp(−dt/τ)``, target ``K_t = N_f kT / 2``, ``R₁ ~ N(0,1)`` and ``S ~ χ²(N_f − 1)``;
    velocities are scaled by ``sqrt(K'/K)``.

    Args:
        velocities: (3, B, N).
        kT: (B,) target temperatures.
        dt, tau: step and thermostat time constant.
        dof: N_f (3N − 3 with the centre of mass fixed).
        r1, chi2: (B,) noise from :func:`bussi_noise`.
        kinetic: (B,) kinetic energies of ``velocities`` if already known (float64; e.g. from
            a fused kick kernel), else computed here.
        rescale: ``rescale(velocities, factors)`` multiplies the (3, B, N) velocities by the
            (B,) factors (e.g. the native kernels' in-place product); None: torch's.

    Returns:
        (3, B, N) rescaled velocities.
    """
    if kinetic is None:
        kinetic = kinetic_energy(velocities)
    kinetic = kinetic.to(torch.float64)
    target = 0.5 * dof * kT.to(torch.float64)
    c = math.exp(-dt / tau)
    new_kinetic = (
        c * kinetic
        + (1.0 - c) * target * (r1 * r1 + chi2) / dof
        + 2.0 * r1 * torch.sqrt(c * (1.0 - c) * kinetic * target / dof)
    )
    scale = torch.sqrt(new_kinetic / torch.clamp(kinetic, min=1e-300)).to(velocities.dtype)
    if rescale is not None:
        return rescale(velocities, scale)
    return velocities * _per_system(scale)


def max_step_displacement_sq(coords: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(B,) largest squared displacement of any particle relative to ``reference``."""
    d = coords - reference
    return (d * d).sum(0).amax(-1)


def fire_mix(velocities, forces, alpha, active):
    """FIRE's mixing ``v ← (1−α) v + α |v| F/|F|`` per system (|·| over the whole system).

    Returns:
        velocities: mixed (only for ``active`` systems).
        power: (B,) ``P = F·v`` measured *before* mixing, as HOOMD-blue does.
    """
    power = per_system_sum(forces * velocities)
    f_norm = torch.sqrt(per_system_sum(forces * forces))
    v_norm = torch.sqrt(per_system_sum(velocities * velocities))
    factor = torch.where(f_norm > 0, alpha * v_norm / torch.where(f_norm > 0, f_norm, 1.0), 1.0)
    mixed = velocities * _per_system(1.0 - alpha) + forces * _per_system(factor)
    return torch.where(_per_system(active), mixed, velocities), power
