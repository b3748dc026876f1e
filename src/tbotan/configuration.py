"""Configurations of KALJ systems and their GSD files.

:class:`ConfigurationBatch` is the one container the whole project passes around: B
independent systems with the same particle number N, each with its own orthorhombic box.  A
single configuration is a batch with B = 1.

Positions are stored wrapped into the box, ``[0, L)``, together with integer image counts, so
the unwrapped position ``positions + images * box`` is exact to rounding; velocities are
optional.  On disk a batch is a GSD file (HOOMD-blue's format, readable by OVITO and freud) with
one frame per system.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tbotan import kalj


class ConfigurationError(ValueError):
    """A configuration (or a file holding one) is malformed."""


@dataclass
class ConfigurationBatch:
    """B configurations of N particles each.

    Attributes:
        positions: (B, N, 3) float64, wrapped into ``[0, box)``.
        types: (B, N) int8, 0 = A, 1 = B.
        box: (B, 3) float64 orthorhombic edge lengths (σ_AA).
        images: (B, N, 3) int32 image counts; unwrapped = positions + images * box.
        velocities: (B, N, 3) float64 or None.
        timestep: (B,) int64 MD step counter of each system.
    """

    positions: np.ndarray
    types: np.ndarray
    box: np.ndarray
    images: np.ndarray | None = None
    velocities: np.ndarray | None = None
    timestep: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float64)
        if self.positions.ndim == 2:  # a single configuration
            self.positions = self.positions[None]
            self.types = np.asarray(self.types)[None]
            self.box = np.asarray(self.box, dtype=np.float64)[None]
            if self.images is not None:
                self.images = np.asarray(self.images)[None]
            if self.velocities is not None:
                self.velocities = np.asarray(self.velocities)[None]
        if self.positions.ndim != 3 or self.positions.shape[-1] != 3:
            raise ConfigurationError(
                f"positions must have shape (B, N, 3) or (N, 3), got {self.positions.shape}"
            )
        n_sys, n = self.positions.shape[:2]
        types = np.asarray(self.types)
        if types.ndim == 1:
            types = np.broadcast_to(types, (n_sys, types.shape[0]))
        if types.shape != (n_sys, n):
            raise ConfigurationError(
                f"types must have shape (B, N) = ({n_sys}, {n}) to match positions, "
                f"got {types.shape}"
            )
        if not np.issubdtype(types.dtype, np.integer):
            raise ConfigurationError(
                f"types must be integers (0 = A, 1 = B), got dtype {types.dtype}"
            )
        if types.size and (types.min() < 0 or types.max() >= len(kalj.TYPE_NAMES)):
            raise ConfigurationError(
                f"types must be 0 (A) or 1 (B), got values in [{types.min()}, {types.max()}]"
            )
        self.types = np.ascontiguousarray(types, dtype=np.int8)
        box = np.asarray(self.box, dtype=np.float64)
        if box.ndim == 0:
            box = np.full((n_sys, 3), float(box))
        elif box.shape == (3,):
            box = np.broadcast_to(box, (n_sys, 3))
        elif box.shape == (n_sys,):
            box = np.repeat(box[:, None], 3, axis=1)
        if box.shape != (n_sys, 3):
            raise ConfigurationError(f"box must have shape (B, 3) = ({n_sys}, 3), got {box.shape}")
        if not np.all(np.isfinite(box)) or np.any(box <= 0):
            raise ConfigurationError(f"box lengths must be positive and finite, got {box.tolist()}")
        self.box = np.array(box, dtype=np.float64, order="C")  # own, writable copy
        if not np.all(np.isfinite(self.positions)):
            bad = np.argwhere(~np.isfinite(self.positions).all(axis=-1))[0]
            raise ConfigurationError(
                f"positions of system {bad[0]}, particle {bad[1]} are not finite"
            )
        images = (
            np.zeros((n_sys, n, 3), dtype=np.int64)
            if self.images is None
            else np.asarray(self.images, dtype=np.int64)
        )
        if images.shape != (n_sys, n, 3):
            raise ConfigurationError(f"images must have shape {(n_sys, n, 3)}, got {images.shape}")
        # wrap into [0, L) and carry the shift into the image counts
        shift = np.floor(self.positions / self.box[:, None, :])
        self.positions = self.positions - shift * self.box[:, None, :]
        self.positions = np.where(self.positions >= self.box[:, None, :], 0.0, self.positions)
        self.positions = np.ascontiguousarray(self.positions)
        self.images = np.ascontiguousarray((images + shift.astype(np.int64)).astype(np.int32))
        if self.velocities is not None:
            vel = np.asarray(self.velocities, dtype=np.float64)
            if vel.shape != (n_sys, n, 3):
                raise ConfigurationError(
                    f"velocities must have shape {(n_sys, n, 3)}, got {vel.shape}"
                )
            if not np.all(np.isfinite(vel)):
                raise ConfigurationError("velocities contain NaN or infinite values")
            self.velocities = np.ascontiguousarray(vel)
        ts = np.zeros(n_sys, dtype=np.int64) if self.timestep is None else np.asarray(self.timestep)
        self.timestep = np.broadcast_to(ts.astype(np.int64), (n_sys,)).copy()

    # ------------------------------------------------------------------ basic properties
    @property
    def n_systems(self) -> int:
        """Number of systems B."""
        return self.positions.shape[0]

    @property
    def n_particles(self) -> int:
        """Particles per system N."""
        return self.positions.shape[1]

    def __len__(self) -> int:
        return self.n_systems

    @property
    def volume(self) -> np.ndarray:
        """(B,) box volumes."""
        return np.prod(self.box, axis=1)

    def unwrapped_positions(self) -> np.ndarray:
        """(B, N, 3) float64 unwrapped positions ``positions + images * box``."""
        return self.positions + self.images * self.box[:, None, :]

    # ------------------------------------------------------------------ batch manipulation
    def select(self, index) -> ConfigurationBatch:
        """The sub-batch ``index`` (an int, slice or index array) as a new batch."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return ConfigurationBatch(
            positions=self.positions[index],
            types=self.types[index],
            box=self.box[index],
            images=self.images[index],
            velocities=None if self.velocities is None else self.velocities[index],
            timestep=self.timestep[index],
        )

    @staticmethod
    def concatenate(batches: Sequence[ConfigurationBatch]) -> ConfigurationBatch:
        """Join batches of the same N into one."""
        if not batches:
            raise ConfigurationError("cannot concatenate an empty list of batches")
        sizes = {b.n_particles for b in batches}
        if len(sizes) != 1:
            raise ConfigurationError(f"cannot batch systems of different N: {sorted(sizes)}")
        has_vel = [b.velocities is not None for b in batches]
        return ConfigurationBatch(
            positions=np.concatenate([b.positions for b in batches]),
            types=np.concatenate([b.types for b in batches]),
            box=np.concatenate([b.box for b in batches]),
            images=np.concatenate([b.images for b in batches]),
            velocities=np.concatenate([b.velocities for b in batches]) if all(has_vel) else None,
            timestep=np.concatenate([b.timestep for b in batches]),
        )

    def repeat(self, n_copies: int) -> ConfigurationBatch:
        """Each system repeated ``n_copies`` times in a row (replicas): B → B·n_copies."""
        idx = np.repeat(np.arange(self.n_systems), n_copies)
        return self.select(idx)

    def with_velocities(self, velocities: np.ndarray | None) -> ConfigurationBatch:
        """A copy with the given velocities (B, N, 3), or without any (None)."""
        return replace(self, velocities=velocities)

    def copy(self) -> ConfigurationBatch:
        """A deep copy."""
        return self.select(np.arange(self.n_systems))


def maxwell_boltzmann_velocities(
    n_particles: int, kT: float, seed: int, stream: int, mass: float = kalj.MASS
) -> np.ndarray:
    """Maxwell–Boltzmann velocities with zero centre-of-mass momentum.

    Drawn with NumPy's PCG64 from ``SeedSequence([seed, stream])``, so every (seed, stream)
    pair gives the same velocities on every engine and machine.  Velocities are not rescaled
    to the exact target temperature: the kinetic energy fluctuates as in the canonical
    ensemble (up to the removed centre-of-mass degrees of freedom).

    Args:
        n_particles: N.
        kT: temperature (ε_AA units), > 0.
        seed: base seed (≥ 0).
        stream: independent stream index, e.g. the replica number (≥ 0).
        mass: particle mass.

    Returns:
        (N, 3) float64 velocities.
    """
    if not kT > 0:
        raise ValueError(f"kT must be positive, got {kT}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(stream)])))
    v = rng.normal(0.0, np.sqrt(kT / mass), size=(n_particles, 3))
    v -= v.mean(axis=0)
    return v


def random_configuration(
    n_particles: int, seed: int, density: float = kalj.DENSITY, min_distance: float = 0.8
) -> ConfigurationBatch:
    """A random KALJ configuration without strong overlaps (a start for melting).

    Particles are placed on a simple-cubic lattice with at least N sites, lattice sites are
    chosen at random, and types are shuffled; this is overlap-free by construction as long as
    the lattice spacing exceeds ``min_distance``.

    Args:
        n_particles: N.
        seed: NumPy seed.
        density: number density.
        min_distance: smallest allowed lattice spacing (σ_AA).

    Returns:
        A batch with one system (no velocities).
    """
    L = kalj.box_length(n_particles, density)
    m = int(np.ceil(n_particles ** (1.0 / 3.0)))
    spacing = L / m
    if spacing < min_distance:
        raise ValueError(f"lattice spacing {spacing:.3f} < min_distance {min_distance}")
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    sites = rng.choice(grid.shape[0], size=n_particles, replace=False)
    positions = (grid[sites] + 0.5) * spacing
    types = rng.permutation(kalj.standard_types(n_particles))
    return ConfigurationBatch(positions=positions, types=types, box=np.full(3, L))


# ---------------------------------------------------------------------------- GSD files

_GSD_TYPES = list(kalj.TYPE_NAMES)
#: GSD log chunks holding the exact float64 positions ([0, L) convention) and velocities;
#: the HOOMD schema's ``particles/position`` and ``particles/velocity`` are float32.
EXACT_POSITION_KEY = "tbotan/position_float64"
EXACT_VELOCITY_KEY = "tbotan/velocity_float64"
EXACT_BOX_KEY = "tbotan/box_float64"


def _gsd():
    try:
        import gsd.hoomd
    except ImportError as exc:  # pragma: no cover - gsd is a hard dependency
        raise ImportError("the 'gsd' package is needed to read and write GSD files") from exc
    return gsd.hoomd


def _frame_from_system(batch: ConfigurationBatch, b: int, log: dict | None):
    hoomd_gsd = _gsd()
    frame = hoomd_gsd.Frame()
    frame.configuration.step = int(batch.timestep[b])
    frame.configuration.box = [*batch.box[b].tolist(), 0.0, 0.0, 0.0]
    frame.configuration.dimensions = 3
    frame.particles.N = batch.n_particles
    frame.particles.types = _GSD_TYPES
    frame.particles.typeid = batch.types[b].astype(np.uint32)
    # GSD/HOOMD boxes are centred on the origin: store positions in [-L/2, L/2)
    half = batch.box[b] / 2.0
    centred = batch.positions[b] - half
    frame.particles.position = centred.astype(np.float64)
    frame.particles.image = batch.images[b].astype(np.int32)
    # the HOOMD schema stores float32; exact float64 copies go into log chunks
    exact = {
        EXACT_POSITION_KEY: batch.positions[b].astype(np.float64),
        EXACT_BOX_KEY: batch.box[b].astype(np.float64),
    }
    if batch.velocities is not None:
        frame.particles.velocity = batch.velocities[b].astype(np.float32)
        exact[EXACT_VELOCITY_KEY] = batch.velocities[b].astype(np.float64)
    frame.particles.mass = np.full(batch.n_particles, kalj.MASS, dtype=np.float32)
    frame.log = {**exact, **{k: np.asarray(v) for k, v in (log or {}).items()}}
    return frame


def write_gsd(
    path: str | os.PathLike,
    batch: ConfigurationBatch,
    logs: Sequence[dict] | None = None,
    mode: str = "w",
) -> None:
    """Write each system of ``batch`` as one GSD frame.

    The HOOMD schema chunks (``particles/position`` centred on the origin, ``image``,
    ``velocity``, ``typeid``) are written for HOOMD-blue, OVITO and freud; since that schema is
    float32, exact float64 positions, velocities and box are stored beside them as the log
    chunks :data:`EXACT_POSITION_KEY`, :data:`EXACT_VELOCITY_KEY` and :data:`EXACT_BOX_KEY`,
    which :func:`read_gsd` prefers.  With ``mode='w'`` the file is
    written atomically (temporary name, then rename), so an interrupted write never leaves a
    file that looks complete.

    Args:
        path: output file.
        batch: the systems to write.
        logs: optional per-system dictionaries stored as GSD ``log/...`` chunks (arrays).
        mode: ``'w'`` (atomic create/overwrite) or ``'a'`` (append frames).
    """
    hoomd_gsd = _gsd()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if logs is not None and len(logs) != batch.n_systems:
        raise ValueError(f"got {len(logs)} log dictionaries for {batch.n_systems} systems")
    if mode == "w":
        target = path.with_name(path.name + ".tmp")
    elif mode == "a":
        target = path
    else:
        raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
    with hoomd_gsd.open(name=str(target), mode="a" if mode == "a" else "w") as traj:
        for b in range(batch.n_systems):
            traj.append(_frame_from_system(batch, b, None if logs is None else logs[b]))
    if mode == "w":
        os.replace(target, path)


def gsd_frame_count(path: str | os.PathLike) -> int:
    """Number of frames in a GSD file."""
    hoomd_gsd = _gsd()
    with hoomd_gsd.open(name=str(path), mode="r") as traj:
        return len(traj)


def read_gsd(
    path: str | os.PathLike, frames: Sequence[int] | slice | None = None
) -> ConfigurationBatch:
    """Read GSD frames as a batch (one system per frame).

    Args:
        path: a GSD file written by :func:`write_gsd`, HOOMD-blue or any tool that writes
            KALJ frames with types ``A`` and ``B``.
        frames: frame indices or a slice; all frames by default.

    Raises:
        ConfigurationError: the file is missing, unreadable, has no frames, frames of
            different N, unknown type names, or a triclinic box.
    """
    hoomd_gsd = _gsd()
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"GSD file not found: {path}")
    try:
        traj = hoomd_gsd.open(name=str(path), mode="r")
    except Exception as exc:  # gsd raises RuntimeError/OSError on damaged files
        raise ConfigurationError(f"cannot read GSD file {path}: {exc}") from exc
    with traj:
        n_frames = len(traj)
        if n_frames == 0:
            raise ConfigurationError(f"GSD file {path} has no frames")
        if frames is None:
            indices = list(range(n_frames))
        elif isinstance(frames, slice):
            indices = list(range(n_frames))[frames]
        else:
            indices = [int(i) for i in frames]
        batches = []
        for i in indices:
            if not -n_frames <= i < n_frames:
                raise ConfigurationError(f"{path} has {n_frames} frames; frame {i} does not exist")
            frame = traj[i]
            batches.append(_system_from_frame(frame, f"{path} frame {i}"))
    return ConfigurationBatch.concatenate(batches)


def _system_from_frame(frame, where: str) -> ConfigurationBatch:
    box = np.asarray(frame.configuration.box, dtype=np.float64)
    if np.any(box[3:] != 0):
        raise ConfigurationError(f"{where}: triclinic boxes are not supported (tilts {box[3:]})")
    names = list(frame.particles.types)
    try:
        mapping = np.array([kalj.TYPE_NAMES.index(t) for t in names], dtype=np.int8)
    except ValueError as exc:
        raise ConfigurationError(
            f"{where}: particle types {names} are not KALJ types A, B"
        ) from exc
    typeid = np.asarray(frame.particles.typeid)
    log = frame.log or {}
    n = int(frame.particles.N)
    if EXACT_BOX_KEY in log:
        box[:3] = np.asarray(log[EXACT_BOX_KEY], dtype=np.float64).reshape(3)
    if EXACT_POSITION_KEY in log:
        positions = np.asarray(log[EXACT_POSITION_KEY], dtype=np.float64).reshape(n, 3)
    else:  # a file from HOOMD-blue or another tool: float32, centred on the origin
        positions = np.asarray(frame.particles.position, dtype=np.float64) + box[:3] / 2.0
    images = np.asarray(frame.particles.image, dtype=np.int64)
    velocities = None
    if EXACT_VELOCITY_KEY in log:
        velocities = np.asarray(log[EXACT_VELOCITY_KEY], dtype=np.float64).reshape(n, 3)
    elif frame.particles.velocity is not None and np.any(frame.particles.velocity != 0):
        velocities = np.asarray(frame.particles.velocity, dtype=np.float64)
    return ConfigurationBatch(
        positions=positions,
        types=mapping[typeid],
        box=box[:3],
        images=images,
        velocities=velocities,
        timestep=np.array([int(frame.configuration.step)]),
    )


def read_gsd_logs(path: str | os.PathLike, key: str) -> np.ndarray:
    """The logged quantity ``key`` of every frame, stacked (frames, ...)."""
    hoomd_gsd = _gsd()
    with hoomd_gsd.open(name=str(path), mode="r") as traj:
        values = [np.asarray(frame.log[key]) for frame in traj]
    return np.stack(values)
