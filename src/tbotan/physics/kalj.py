"""The Kob–Andersen binary Lennard-Jones mixture (KALJ) and its float64 reference evaluator.

This module is the single place where the mixture's parameters live.  Every engine and every
analysis takes them from here.

The pair potential is the *linearly smoothed* (shifted-force) Lennard-Jones potential of the
paper (Eq. 1–2), with a cut-off per pair type ``r_c = 2.5 σ_μν``:

.. math::

    U_{μν}(r) = u(r) - u(r_c) - (r - r_c)\\, u'(r_c) \\quad (r < r_c), \\qquad 0 \\text{ otherwise},

    u(r) = 4 ε_{μν} [(σ_{μν}/r)^{12} - (σ_{μν}/r)^6].

Both ``U`` and the force ``-dU/dr`` vanish continuously at ``r_c``.  Units: σ_AA (length),
ε_AA (energy), sqrt(m σ_AA² / ε_AA) (time); all masses are 1.

Types are integers: 0 = A (80 %), 1 = B (20 %).

Example::

    import numpy as np
    from tbotan.physics import kalj
    L = kalj.box_length(4096)               # 15.05658 at ρ = 1.2
    result = kalj.evaluate(positions, types, L)
    print(result.total_potential_energy / 4096)   # U/N
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Type names, indexed by the integer type id.
TYPE_NAMES: tuple[str, ...] = ("A", "B")
#: The integer type ids (``types`` arrays everywhere, docs/formats.md): the large, majority
#: species A, on which the paper evaluates C_B and its correlations, and B.
TYPE_A: int = 0
TYPE_B: int = 1
#: Fraction of A particles.
FRACTION_A: float = 0.8
#: Number density N/V of the standard KALJ state.
DENSITY: float = 1.2
#: Particle mass (all particles).
MASS: float = 1.0
#: ε_μν, indexed [type_i, type_j].
EPSILON = np.array([[1.0, 1.5], [1.5, 0.5]], dtype=np.float64)
#: σ_μν, indexed [type_i, type_j].
SIGMA = np.array([[1.0, 0.8], [0.8, 0.88]], dtype=np.float64)
#: Cut-off in units of σ_μν.
CUTOFF_IN_SIGMA: float = 2.5
#: Cut-off radius r_c per pair type, indexed [type_i, type_j].
R_CUT = CUTOFF_IN_SIGMA * SIGMA
#: τα of the paper's Table I (N = 4096, time units), by temperature: the run lengths of the
#: pipeline's configuration (config.yaml), the importer's default and the validation's reference.
TABLE_I_TAU_ALPHA: dict[float, float] = {
    0.44: 4120.0,
    0.47: 616.0,
    0.50: 217.0,
    0.56: 52.0,
    0.64: 16.5,
    0.80: 3.42,
}


def lj_energy(r: np.ndarray | float, epsilon, sigma) -> np.ndarray:
    """Plain Lennard-Jones ``u(r) = 4ε[(σ/r)^12 − (σ/r)^6]`` (energy units)."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def lj_derivative(r: np.ndarray | float, epsilon, sigma) -> np.ndarray:
    """``du/dr = 4ε[−12 σ^12/r^13 + 6 σ^6/r^7]`` (energy / length)."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (-12.0 * s6 * s6 + 6.0 * s6) / r


@dataclass(frozen=True)
class PairTable:
    """Per-pair-type coefficients of the shifted-force potential, flattened as ``2*t_i + t_j``.

    Attributes (each shape (4,), float64):
        c12: 4 ε σ^12.
        c6: 4 ε σ^6.
        r_cut: r_c = 2.5 σ.
        r_cut_sq: r_c².
        u_cut: u(r_c).
        du_cut: u'(r_c).
    """

    c12: np.ndarray
    c6: np.ndarray
    r_cut: np.ndarray
    r_cut_sq: np.ndarray
    u_cut: np.ndarray
    du_cut: np.ndarray


def pair_table() -> PairTable:
    """The coefficient table of the KALJ shifted-force potential (see :class:`PairTable`)."""
    eps, sig, rc = EPSILON.ravel(), SIGMA.ravel(), R_CUT.ravel()
    return PairTable(
        c12=4.0 * eps * sig**12,
        c6=4.0 * eps * sig**6,
        r_cut=rc.copy(),
        r_cut_sq=rc**2,
        u_cut=lj_energy(rc, eps, sig),
        du_cut=lj_derivative(rc, eps, sig),
    )


def pair_energy(r: np.ndarray, type_i: np.ndarray, type_j: np.ndarray) -> np.ndarray:
    """Shifted-force pair energy ``U_μν(r)`` of Eq. 1, zero beyond ``r_c`` (float64)."""
    r = np.asarray(r, dtype=np.float64)
    eps, sig, rc = EPSILON[type_i, type_j], SIGMA[type_i, type_j], R_CUT[type_i, type_j]
    u = lj_energy(r, eps, sig) - lj_energy(rc, eps, sig) - (r - rc) * lj_derivative(rc, eps, sig)
    return np.where(r < rc, u, 0.0)


def pair_force_over_r(r: np.ndarray, type_i: np.ndarray, type_j: np.ndarray) -> np.ndarray:
    """``−(dU/dr)/r`` of the shifted-force potential, zero beyond ``r_c``.

    The force on particle i from j is ``pair_force_over_r(r_ij) * (r_i − r_j)``.
    """
    r = np.asarray(r, dtype=np.float64)
    eps, sig, rc = EPSILON[type_i, type_j], SIGMA[type_i, type_j], R_CUT[type_i, type_j]
    f = -(lj_derivative(r, eps, sig) - lj_derivative(rc, eps, sig)) / r
    return np.where(r < rc, f, 0.0)


def number_of_a(n_particles: int) -> int:
    """Number of A particles in an N-particle KALJ system (80 %, rounded to nearest)."""
    return int(round(FRACTION_A * n_particles))


def box_length(n_particles: int, density: float = DENSITY) -> float:
    """Edge length L of the cubic box holding ``n_particles`` at number density ``density``."""
    if n_particles <= 0 or density <= 0:
        raise ValueError(
            f"box_length needs n_particles > 0 and density > 0, got {n_particles}, {density}"
        )
    return float((n_particles / density) ** (1.0 / 3.0))


def standard_types(n_particles: int) -> np.ndarray:
    """Types (N,) int8 of an N-particle KALJ system: the first 80 % are A (0), the rest B (1)."""
    types = np.ones(n_particles, dtype=np.int8)
    types[: number_of_a(n_particles)] = 0
    return types


def max_cutoff() -> float:
    """Largest pair cut-off ``max r_c`` (σ_AA units)."""
    return float(R_CUT.max())


@dataclass(frozen=True)
class Evaluation:
    """Result of :func:`evaluate` for one configuration.

    Attributes:
        total_potential_energy: total shifted-force energy U of the N particles (ε_AA); U/N
            is ``total_potential_energy / N``.
        per_particle_energy: (N,) float64, half of each pair energy given to each partner.
        forces: (N, 3) float64, ``F_i = −∂U/∂r_i``.
        virial: scalar ``W = Σ_{i<j} r_ij · F_ij`` (energy units); the pressure is
            ``P = (N k T + W / 3) / V`` (see :func:`pressure`).
        n_pairs: number of pairs inside their cut-off.
        min_distance_over_sigma: smallest ``r_ij / σ_μν`` over the pairs inside the cut-off.
    """

    total_potential_energy: float
    per_particle_energy: np.ndarray
    forces: np.ndarray
    virial: float
    n_pairs: int
    min_distance_over_sigma: float


def _check_configuration(positions: np.ndarray, types: np.ndarray, box: np.ndarray) -> None:
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {positions.shape}")
    if types.shape != (positions.shape[0],):
        raise ValueError(
            f"types must have shape (N,) = ({positions.shape[0]},) to match positions, "
            f"got {types.shape}"
        )
    if types.size and (types.min() < 0 or types.max() >= len(TYPE_NAMES)):
        raise ValueError(
            f"types must be 0 (A) or 1 (B), got values in [{types.min()}, {types.max()}]"
        )
    if box.shape != (3,) or not np.all(box > 0) or not np.all(np.isfinite(box)):
        raise ValueError(f"box must be three positive finite lengths, got {box}")
    if not np.all(np.isfinite(positions)):
        raise ValueError("positions contain NaN or infinite values")
    if np.any(box <= 2.0 * max_cutoff()):
        raise ValueError(
            f"box {box} is too small for the minimum-image convention: every edge must exceed "
            f"2 r_c = {2 * max_cutoff():.3f}"
        )


def neighbor_pairs(positions: np.ndarray, box, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """All unordered pairs (i < j) closer than ``r_max`` under periodic minimum image.

    Uses SciPy's periodic KD-tree (O(N log N)); independent of the torch engine.

    Args:
        positions: (N, 3) float64, any real coordinates (wrapped internally).
        box: (3,) box lengths or a scalar L.
        r_max: search radius.

    Returns:
        ``(i, j)``, two (P,) int64 arrays with ``i < j``.
    """
    from scipy.spatial import cKDTree

    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    wrapped = np.mod(positions, box)
    wrapped[wrapped >= box] = 0.0  # mod can return exactly L through rounding
    tree = cKDTree(wrapped, boxsize=box)
    pairs = tree.query_pairs(r_max, output_type="ndarray")
    if pairs.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def closest_pair(positions: np.ndarray, types: np.ndarray, box) -> tuple[int, int, float, float]:
    """The pair closest relative to its own σ_μν, under periodic minimum image.

    Pairs within ``r < max σ_μν`` (= σ_AA) are searched with :func:`neighbor_pairs`; beyond it
    no pair can be closer than 1 σ_μν, so a configuration without any such pair returns
    ``(-1, -1, inf, inf)``.

    Args:
        positions: (N, 3) float64 (σ_AA); types: (N,) 0 = A, 1 = B; box: (3,) or a scalar L.

    Returns:
        ``(i, j, r, r / σ_μν)`` with ``i < j`` the particle indices, r their distance (σ_AA).
    """
    positions = np.asarray(positions, dtype=np.float64)
    types = np.asarray(types, dtype=np.int64)
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    i, j = neighbor_pairs(positions, box, float(SIGMA.max()))
    if i.size == 0:
        return -1, -1, float("inf"), float("inf")
    d = minimum_image(positions[i] - positions[j], box)
    r = np.sqrt((d * d).sum(axis=1))
    ratio = r / SIGMA[types[i], types[j]]
    k = int(np.argmin(ratio))
    return int(i[k]), int(j[k]), float(r[k]), float(ratio[k])


def minimum_image(delta: np.ndarray, box) -> np.ndarray:
    """Minimum-image displacement(s) ``delta − L round(delta / L)`` (any leading shape, last 3)."""
    box = np.asarray(box, dtype=np.float64)
    return delta - box * np.round(delta / box)


def evaluate(positions: np.ndarray, types: np.ndarray, box) -> Evaluation:
    """Float64 reference evaluation of the KALJ shifted-force potential for one configuration.

    O(N log N) through a periodic KD-tree; every pair within its own cut-off ``2.5 σ_μν``
    contributes.  This is the independent reference the engines are tested against.

    Args:
        positions: (N, 3) coordinates (σ_AA); wrapped or unwrapped.
        types: (N,) integer types, 0 = A, 1 = B.
        box: cubic edge L (float) or (3,) orthorhombic edge lengths.

    Returns:
        An :class:`Evaluation`.
    """
    positions = np.asarray(positions, dtype=np.float64)
    types = np.asarray(types).astype(np.int64)
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,)).copy()
    _check_configuration(positions, types, box)
    n = positions.shape[0]

    i, j = neighbor_pairs(positions, box, max_cutoff())
    ti, tj = types[i], types[j]
    delta = minimum_image(positions[i] - positions[j], box)
    r = np.sqrt(np.einsum("pk,pk->p", delta, delta))
    inside = r < R_CUT[ti, tj]
    i, j, ti, tj, delta, r = i[inside], j[inside], ti[inside], tj[inside], delta[inside], r[inside]

    u = pair_energy(r, ti, tj)
    f_pair = pair_force_over_r(r, ti, tj)[:, None] * delta  # force on i from j

    per_particle = np.zeros(n)
    np.add.at(per_particle, i, 0.5 * u)
    np.add.at(per_particle, j, 0.5 * u)
    forces = np.zeros((n, 3))
    np.add.at(forces, i, f_pair)
    np.add.at(forces, j, -f_pair)
    virial = float(np.einsum("pk,pk->", delta, f_pair))
    min_ratio = float((r / SIGMA[ti, tj]).min()) if r.size else np.inf
    return Evaluation(
        total_potential_energy=float(u.sum()),
        per_particle_energy=per_particle,
        forces=forces,
        virial=virial,
        n_pairs=int(r.size),
        min_distance_over_sigma=min_ratio,
    )


def cutoff_shift_correction(positions: np.ndarray, types: np.ndarray, box) -> np.ndarray:
    """Per-particle energy to add to HOOMD-blue's ``ForceShiftedLJ`` energies.

    HOOMD-blue's ``md.pair.ForceShiftedLJ`` (mode ``'none'``, the only one it accepts) reports
    ``u(r) − (r − r_c) u'(r_c)`` without the constant ``−u(r_c)`` of Eq. 1; its forces are
    exact.  Adding ``−½ Σ_{j: r_ij < r_c} u_μν(r_c)`` to each particle restores the
    shifted-force energy.

    Returns:
        (N,) float64 correction (positive for KALJ, since u(r_c) < 0).
    """
    positions = np.asarray(positions, dtype=np.float64)
    types = np.asarray(types).astype(np.int64)
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,)).copy()
    i, j = neighbor_pairs(positions, box, max_cutoff())
    delta = minimum_image(positions[i] - positions[j], box)
    r = np.sqrt(np.einsum("pk,pk->p", delta, delta))
    ti, tj = types[i], types[j]
    inside = r < R_CUT[ti, tj]
    shift = lj_energy(R_CUT, EPSILON, SIGMA)[ti[inside], tj[inside]]
    correction = np.zeros(positions.shape[0])
    np.add.at(correction, i[inside], -0.5 * shift)
    np.add.at(correction, j[inside], -0.5 * shift)
    return correction


def pressure(virial: float, kinetic_energy: float, volume: float) -> float:
    """Pressure ``P = (2 K / 3 + W / 3) / V`` from the virial W and kinetic energy K (3D)."""
    return (2.0 * kinetic_energy + virial) / (3.0 * volume)
