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

from tbotan.errors import FileFormatError
from tbotan.physics import kalj


class ConfigurationError(FileFormatError):
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
#: GSD log chunks of provenance in every frame tbotan writes: the tbotan version and, when the
#: writer has one, the hash of the run's configuration (``tbotan.config.section_hash``, the
#: ``config_hash`` of the dataset files); text, stored as UTF-8 bytes (uint8), see
#: :func:`gsd_text` and :func:`read_gsd_text`.
VERSION_KEY = "tbotan/version"
CONFIG_HASH_KEY = "tbotan/config_hash"
#: Per-type diameters of the GSD schema's ``particles/diameter``: σ_AA and σ_BB (σ_AA units),
#: what OVITO and HOOMD-blue draw.
TYPE_DIAMETERS = np.diag(kalj.SIGMA).astype(np.float32)


def gsd_text(text: str) -> np.ndarray:
    """Text as a GSD log value: its UTF-8 bytes as a (bytes,) uint8 array (GSD logs are
    numeric arrays)."""
    return np.frombuffer(str(text).encode("utf-8"), dtype=np.uint8).copy()


def _gsd():
    try:
        import gsd.hoomd
    except ImportError as exc:  # pragma: no cover - gsd is a hard dependency
        raise ImportError("the 'gsd' package is needed to read and write GSD files") from exc
    return gsd.hoomd


def _frame_from_system(
    batch: ConfigurationBatch,
    b: int,
    log: dict | None,
    provenance: dict,
    bonds: np.ndarray | None = None,
    bond_type: str = "",
):
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
    frame.particles.diameter = TYPE_DIAMETERS[batch.types[b]]
    if bonds is not None:
        frame.bonds.N = len(bonds)
        frame.bonds.types = [bond_type]
        frame.bonds.typeid = np.zeros(len(bonds), dtype=np.uint32)
        frame.bonds.group = np.asarray(bonds, dtype=np.uint32).reshape(-1, 2)
    frame.log = {**exact, **provenance, **{k: np.asarray(v) for k, v in (log or {}).items()}}
    return frame


def write_gsd(
    path: str | os.PathLike,
    batch: ConfigurationBatch,
    logs: Sequence[dict] | None = None,
    mode: str = "w",
    config_hash: str | None = None,
    bonds: Sequence[np.ndarray] | None = None,
    bond_type: str = "bond",
) -> None:
    """Write each system of ``batch`` as one GSD frame.

    The HOOMD schema chunks (``particles/position`` centred on the origin, ``image``,
    ``velocity``, ``typeid``, ``mass``, and ``diameter`` per type, :data:`TYPE_DIAMETERS`) are
    written for HOOMD-blue, OVITO and freud; since that schema is float32, exact float64
    positions, velocities and box are stored beside them as the log chunks
    :data:`EXACT_POSITION_KEY`, :data:`EXACT_VELOCITY_KEY` and :data:`EXACT_BOX_KEY`, which
    :func:`read_gsd` prefers.  Every frame carries its provenance: the tbotan version
    (:data:`VERSION_KEY`) and, given ``config_hash``, :data:`CONFIG_HASH_KEY`.  With
    ``mode='w'`` the file is written atomically
    (temporary name, then rename): an interrupted or failed write (disk full, read-only folder)
    leaves no file that looks complete, and no temporary file either
    (:class:`tbotan.formats.io_utils.OutputError` names the file).

    Args:
        path: output file.
        batch: the systems to write.
        logs: optional per-system dictionaries stored as GSD ``log/...`` chunks (arrays;
            ``particles/<name>`` (N, ...) and ``bonds/<name>`` (bonds, ...) are the per-particle
            and per-bond properties OVITO shows, other names its global attributes).
        mode: ``'w'`` (atomic create/overwrite) or ``'a'`` (append frames).
        config_hash: the run's configuration hash (``tbotan.config.section_hash``), or None.
        bonds: optional per-system (bonds, 2) particle-index pairs, stored as GSD bonds of the
            one type ``bond_type``.
    """
    from tbotan import __version__
    from tbotan.formats.io_utils import atomic_path, check_space, output_error

    hoomd_gsd = _gsd()
    path = Path(path)
    if logs is not None and len(logs) != batch.n_systems:
        raise ValueError(f"got {len(logs)} log dictionaries for {batch.n_systems} systems")
    if bonds is not None and len(bonds) != batch.n_systems:
        raise ValueError(f"got {len(bonds)} bond lists for {batch.n_systems} systems")
    if mode not in ("w", "a"):
        raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
    provenance = {VERSION_KEY: gsd_text(__version__)}
    if config_hash is not None:
        provenance[CONFIG_HASH_KEY] = gsd_text(config_hash)

    def write(target: Path, gsd_mode: str) -> None:
        with hoomd_gsd.open(name=str(target), mode=gsd_mode) as traj:
            for b in range(batch.n_systems):
                traj.append(
                    _frame_from_system(
                        batch,
                        b,
                        None if logs is None else logs[b],
                        provenance,
                        None if bonds is None else bonds[b],
                        bond_type,
                    )
                )

    # about 100 bytes per particle and frame (float32 schema chunks and float64 logs)
    check_space(path, batch.n_systems * (100 * batch.n_particles + 4096))
    if mode == "w":
        with atomic_path(path) as tmp:
            write(tmp, "w")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, "a")
    except OSError as exc:
        raise output_error(exc, path) from exc


_DAMAGED = "rerun the stage that wrote it"


def _open_gsd(path: str | os.PathLike):
    """An open GSD trajectory, or ConfigurationError naming the file and what to do."""
    hoomd_gsd = _gsd()
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"GSD file not found: {path}")
    if path.stat().st_size == 0:
        raise ConfigurationError(
            f"GSD file {path} is empty (0 bytes): its writer was interrupted; {_DAMAGED}"
        )
    try:
        return hoomd_gsd.open(name=str(path), mode="r")
    except Exception as exc:  # gsd raises RuntimeError/OSError on damaged files
        reason = " ".join(str(exc).split())
        raise ConfigurationError(
            f"cannot read GSD file {path} ({reason}): it is truncated, damaged or not a GSD "
            f"file; {_DAMAGED}"
        ) from exc


def _frame_indices(path: Path, frames, n_frames: int) -> list[int]:
    if n_frames == 0:
        raise ConfigurationError(f"GSD file {path} has no frames; {_DAMAGED}")
    if frames is None:
        return list(range(n_frames))
    if isinstance(frames, slice):
        return list(range(n_frames))[frames]
    out = []
    for i in frames:
        i = int(i)
        if not -n_frames <= i < n_frames:
            raise ConfigurationError(f"{path} has {n_frames} frames; frame {i} does not exist")
        out.append(i % n_frames)
    return out


def gsd_frame_count(path: str | os.PathLike) -> int:
    """Number of frames in a GSD file (ConfigurationError if it is missing or damaged)."""
    with _open_gsd(path) as traj:
        return len(traj)


def read_gsd(
    path: str | os.PathLike,
    frames: Sequence[int] | slice | None = None,
    cubic: bool = True,
) -> ConfigurationBatch:
    """Read GSD frames as a batch (one system per frame).

    Every frame is checked on its own: GSD hands a frame that lacks a chunk the value of frame
    0, so a frame without the exact-position log that frame 0 carries (frames appended by
    another tool) is refused rather than read with frame 0's positions.

    Args:
        path: a GSD file written by :func:`write_gsd`, HOOMD-blue or any tool that writes
            3-d KALJ frames with types ``A`` and ``B``.
        frames: frame indices or a slice; all frames by default.
        cubic: refuse boxes that are not cubic (the pipeline assumes L × L × L).

    Raises:
        ConfigurationError: naming the file and frame: the file is missing, empty, truncated
            or damaged, has no frames, frames of different N, unknown type names or type ids,
            a triclinic, non-cubic or non-positive box, non-finite coordinates, or frames that
            do not all carry tbotan's logs.
    """
    path = Path(path)
    with _open_gsd(path) as traj:
        indices = _frame_indices(path, frames, len(traj))
        batches = [_system_from_frame(traj, i, f"{path} frame {i}", cubic) for i in indices]
    try:
        return ConfigurationBatch.concatenate(batches)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def _system_from_frame(traj, i: int, where: str, cubic: bool) -> ConfigurationBatch:
    try:
        frame = traj[i]
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise ConfigurationError(f"{where} cannot be read ({reason}); {_DAMAGED}") from exc
    log = frame.log or {}
    inherited = sorted(
        k for k in log if k.startswith("tbotan/") and not traj.file.chunk_exists(i, "log/" + k)
    )
    if inherited:
        raise ConfigurationError(
            f"{where} lacks the log chunks {['log/' + k for k in inherited]} that frame 0 "
            "carries (frames appended by another tool?): GSD would give it frame 0's values; "
            "rewrite the file with tbotan alone"
        )
    if int(frame.configuration.dimensions) != 3:
        raise ConfigurationError(
            f"{where}: a {int(frame.configuration.dimensions)}-d frame; KALJ systems are 3-d"
        )
    box = np.asarray(frame.configuration.box, dtype=np.float64)
    if np.any(box[3:] != 0):
        raise ConfigurationError(
            f"{where}: triclinic boxes are not supported (tilts {box[3:].tolist()}); give an "
            "orthogonal cubic box"
        )
    names = [str(t) for t in frame.particles.types]
    unknown = [t for t in names if t not in kalj.TYPE_NAMES]
    if unknown:
        raise ConfigurationError(
            f"{where}: particle types {names} are not the KALJ types A, B (unknown: {unknown}); "
            "rename the types to A (large) and B (small)"
        )
    mapping = np.array([kalj.TYPE_NAMES.index(t) for t in names], dtype=np.int8)
    n = int(frame.particles.N)
    if n == 0:
        raise ConfigurationError(f"{where} holds no particles")
    typeid = np.asarray(frame.particles.typeid)
    if typeid.shape != (n,):
        raise ConfigurationError(f"{where}: typeid has shape {typeid.shape}, expected ({n},)")
    if typeid.max() >= len(names):
        bad = int(np.argmax(typeid >= len(names)))
        raise ConfigurationError(
            f"{where}: particle {bad} has typeid {int(typeid[bad])} but the frame names only "
            f"{len(names)} types {names}; the file is damaged"
        )

    def exact(key: str, shape: tuple[int, ...]) -> np.ndarray:
        value = np.asarray(log[key])
        if value.size != int(np.prod(shape)) or not np.issubdtype(value.dtype, np.number):
            raise ConfigurationError(
                f"{where}: log/{key} holds {value.size} values of {value.dtype}, expected "
                f"{shape} numbers; the file is damaged"
            )
        return value.astype(np.float64).reshape(shape)

    if EXACT_BOX_KEY in log:
        box[:3] = exact(EXACT_BOX_KEY, (3,))
    edges = box[:3]
    if not (np.all(np.isfinite(edges)) and np.all(edges > 0)):
        raise ConfigurationError(f"{where}: box edges {edges.tolist()} must be positive and finite")
    if cubic and not np.allclose(edges, edges[0], rtol=1e-6, atol=0.0):
        raise ConfigurationError(
            f"{where}: the box {edges.tolist()} is not cubic; tbotan assumes a cubic box "
            "(L, L, L): give a cubic configuration"
        )
    if EXACT_POSITION_KEY in log:
        positions = exact(EXACT_POSITION_KEY, (n, 3))
    else:  # a file from HOOMD-blue or another tool: float32, centred on the origin
        positions = np.asarray(frame.particles.position, dtype=np.float64)
        if positions.shape != (n, 3):
            raise ConfigurationError(
                f"{where}: particles/position has shape {positions.shape}, expected ({n}, 3)"
            )
        positions = positions + edges / 2.0
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        j = int(np.argmax(bad))
        raise ConfigurationError(
            f"{where}: particle {j} has a non-finite position {positions[j].tolist()} "
            f"({int(bad.sum())} particles in all); the configuration is broken"
        )
    images = np.asarray(frame.particles.image, dtype=np.int64)
    if images.shape != (n, 3):
        raise ConfigurationError(f"{where}: particles/image has shape {images.shape}")
    velocities = None
    if EXACT_VELOCITY_KEY in log:
        velocities = exact(EXACT_VELOCITY_KEY, (n, 3))
    elif frame.particles.velocity is not None and np.any(frame.particles.velocity != 0):
        velocities = np.asarray(frame.particles.velocity, dtype=np.float64)
    if velocities is not None and not np.all(np.isfinite(velocities)):
        j = int(np.argmax(~np.isfinite(velocities).all(axis=1)))
        raise ConfigurationError(f"{where}: particle {j} has a non-finite velocity")
    try:
        return ConfigurationBatch(
            positions=positions,
            types=mapping[typeid],
            box=edges,
            images=images,
            velocities=velocities,
            timestep=np.array([int(frame.configuration.step)]),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def gsd_log_present(path: str | os.PathLike, key: str) -> np.ndarray:
    """(frames,) bool: which frames of ``path`` carry the log chunk ``log/<key>`` themselves."""
    with _open_gsd(path) as traj:
        return np.array(
            [traj.file.chunk_exists(i, "log/" + key) for i in range(len(traj))], dtype=bool
        )


def read_gsd_logs(
    path: str | os.PathLike, key: str, frames: Sequence[int] | slice | None = None
) -> np.ndarray:
    """The logged quantity ``key`` of every frame (or of ``frames``), stacked (frames, ...).

    Raises:
        ConfigurationError: a frame does not carry ``log/<key>`` itself (GSD would hand it
            frame 0's value), or the values differ in shape.
    """
    path = Path(path)
    name = "log/" + key
    with _open_gsd(path) as traj:
        indices = _frame_indices(path, frames, len(traj))
        values = []
        for i in indices:
            if not traj.file.chunk_exists(i, name):
                raise ConfigurationError(
                    f"{path} frame {i} has no log chunk {name} (was it written by tbotan?); "
                    f"{_DAMAGED} with tbotan"
                )
            try:
                values.append(np.asarray(traj.file.read_chunk(frame=i, name=name)))
            except Exception as exc:
                reason = " ".join(str(exc).split())
                raise ConfigurationError(
                    f"{path} frame {i}: cannot read {name} ({reason}); {_DAMAGED}"
                ) from exc
    if len({v.shape for v in values}) > 1:
        raise ConfigurationError(f"{path}: {name} differs in shape between frames")
    return np.stack(values)


def read_gsd_text(path: str | os.PathLike, key: str, frame: int = 0) -> str:
    """The text log ``log/<key>`` of ``frame`` (written with :func:`gsd_text`), e.g.
    :data:`VERSION_KEY`; ConfigurationError when the frame does not carry it."""
    value = read_gsd_logs(path, key, [frame])[0]
    try:
        return np.asarray(value, dtype=np.uint8).tobytes().decode("utf-8")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"{path} frame {frame}: log/{key} is not UTF-8 text") from exc


def read_provenance(
    path: str | os.PathLike, frames: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(system, sample) of ``frames`` of an equilibrium file, and a note when they are guessed.

    Files of ``tbotan equilibrate`` (and ``tbotan quench``) carry ``log/tbotan/system`` and
    ``log/tbotan/sample`` in every frame.  A file written by another tool carries neither: then
    frame c is taken as sample 0 of an independent system c, and the note says so.  A file
    where only some frames carry them is refused (ConfigurationError).
    """
    frames = np.asarray(list(frames), dtype=np.int64)
    have = {key: gsd_log_present(path, key) for key in ("tbotan/system", "tbotan/sample")}
    if all(h.all() for h in have.values()):
        system = read_gsd_logs(path, "tbotan/system", frames).ravel().astype(np.int64)
        sample = read_gsd_logs(path, "tbotan/sample", frames).ravel().astype(np.int64)
        if system.shape != frames.shape or sample.shape != frames.shape:
            raise ConfigurationError(f"{path}: log/tbotan/system or log/tbotan/sample is damaged")
        return system, sample, None
    if not any(h.any() for h in have.values()):
        note = (
            f"{path} carries no log/tbotan/system, log/tbotan/sample (not written by "
            "`tbotan equilibrate`): every frame is taken as sample 0 of its own independent system"
        )
        return frames.copy(), np.zeros_like(frames), note
    partial = [k for k, h in have.items() if not h.all()]
    frame = int(np.argmin(have[partial[0]]))
    raise ConfigurationError(
        f"{path} frame {frame} lacks log/{partial[0]} that other frames carry (frames appended "
        "by another tool?); rewrite the file with tbotan alone"
    )
