"""Import BOTAN/GlassBench-style isoconfigurational data into the dataset schema.

Input files (``.npz``, one configuration each, as published with BOTAN and GlassBench):
``types`` (N,), ``initial_positions`` (N, 3) thermal configuration at t = 0 in [0, L), and
``positions`` (R, N, 3) the R replicas at the label time, unwrapped.  The box and temperature
are not stored in these files and are given by the user.

The importer quenches each thermal configuration to its inherent structure (FIRE, any engine),
computes C_B, propensity and edge labels from the stored replicas, builds both graphs, and
writes one dataset file (docs/formats.md), so a model can be trained on public data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tbotan import config as cfgmod
from tbotan.errors import FileFormatError
from tbotan.formats.dataset import DatasetContent, dataset_attrs
from tbotan.labels.replicas import configuration_labels
from tbotan.physics import kalj, observables
from tbotan.physics.configurations import ConfigurationBatch


class BotanImportError(FileFormatError):
    """An input file does not look like BOTAN/GlassBench isoconfigurational data."""


def _real_array(path: Path, name: str, value: np.ndarray) -> np.ndarray:
    """``value`` as float64, refusing non-numeric dtypes and non-finite entries."""
    if value.dtype == bool or not (
        np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
    ):
        raise BotanImportError(f"{path}: {name} has dtype {value.dtype}, expected real numbers")
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)):
        bad = np.argwhere(~np.isfinite(value))[0].tolist()
        raise BotanImportError(
            f"{path}: {name} contains NaN or infinite values (first at index {bad})"
        )
    return value


def check_types(path: str | os.PathLike, value: np.ndarray) -> np.ndarray:
    """(N,) int8 particle types from an input array: integers 0 (A) and 1 (B) only."""
    if value.ndim != 1 or value.size == 0:
        raise BotanImportError(f"{path}: types has shape {value.shape}, expected (N,)")
    if np.issubdtype(value.dtype, np.floating):
        if not np.all(np.isfinite(value)) or np.any(value != np.round(value)):
            raise BotanImportError(f"{path}: types must be the integers 0 (A) and 1 (B)")
    elif value.dtype == bool or not np.issubdtype(value.dtype, np.integer):
        raise BotanImportError(f"{path}: types has dtype {value.dtype}, expected integers 0, 1")
    found = sorted(set(np.unique(value).tolist()) - {0, 1})
    if found:
        raise BotanImportError(f"{path}: types must be 0 (A) or 1 (B), found also {found[:5]}")
    return value.astype(np.int8)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (BotanImportError if missing, damaged or pickled)."""
    path = Path(path)
    if not path.is_file():
        raise BotanImportError(f"input file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise BotanImportError(
            f"cannot read {path} as a .npz file ({reason}): it is truncated, damaged or not an "
            ".npz archive of plain arrays"
        ) from exc


def read_botan_npz(path: str | os.PathLike) -> dict:
    """Read and check one BOTAN-style file; returns types, initial_positions, positions.

    Checks keys, shapes ((N,), (N, 3), (R, N, 3)), dtypes (integer types 0/1, real positions)
    and finiteness; the displacement check needs the box (:func:`check_unwrapped`).
    """
    path = Path(path)
    content = read_npz(path)
    missing = [k for k in ("types", "initial_positions", "positions") if k not in content]
    if missing:
        raise BotanImportError(f"{path}: missing arrays {missing} (has {sorted(content)})")
    types, initial, final = content["types"], content["initial_positions"], content["positions"]
    n = types.shape[0] if types.ndim else 0
    if types.ndim != 1 or initial.shape != (n, 3) or final.ndim != 3 or final.shape[1:] != (n, 3):
        raise BotanImportError(
            f"{path}: shapes types {types.shape}, initial_positions {initial.shape}, positions "
            f"{final.shape} do not fit (N,), (N, 3), (R, N, 3)"
        )
    if final.shape[0] < 1:
        raise BotanImportError(f"{path}: positions holds no replicas (shape {final.shape})")
    types = check_types(path, types)
    initial = _real_array(path, "initial_positions", initial)
    final = _real_array(path, "positions", final)
    return {"types": types, "initial_positions": initial, "positions": final}


def check_unwrapped(path: str | os.PathLike, initial: np.ndarray, final: np.ndarray, L: float):
    """Refuse replica positions wrapped into the box instead of unwrapped.

    Unwrapped replicas move a short way from ``initial_positions``; wrapped ones show, for every
    particle that crossed the box, a displacement component that jumps by about ±L, and all of
    them fit in one box-wide window.  The file is refused when both hold: some component larger
    than L/2 has a minimum image within L/4 of zero, and along that axis every replica position
    lies within a window of width L.  (Unwrapped data that moved spreads beyond the box.)
    """
    d = final - initial[None]
    image = d - L * np.round(d / L)
    jumps = (np.abs(d) > 0.5 * L) & (np.abs(image) < 0.25 * L)
    if not jumps.any():
        return
    span = final.reshape(-1, 3).max(axis=0) - final.reshape(-1, 3).min(axis=0)
    boxed = span <= L * (1 + 1e-9)
    jumps &= boxed[None, None, :]
    if jumps.any():
        r, j, axis = np.argwhere(jumps)[0].tolist()
        raise BotanImportError(
            f"{path}: replica {r}, particle {j} moves by {d[r, j, axis]:+.3f} ≈ "
            f"{np.round(d[r, j, axis] / L):+.0f} L along {'xyz'[axis]} ({int(jumps.any(-1).sum())} "
            f"particle displacements jump by ~L): the replica positions look wrapped into the "
            f"box (L = {L:g}); give unwrapped positions (add the image shifts), or check --box"
        )


def _positive(name: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise BotanImportError(f"{name} must be a positive number, got {value!r}") from exc
    if not (math.isfinite(value) and value > 0):
        raise BotanImportError(f"{name} must be a positive, finite number, got {value}")
    return value


def import_botan(
    paths: Sequence[str | os.PathLike],
    *,
    box: float,
    temperature: float,
    engine,
    tau_alpha: float | None = None,
    label_time: float | None = None,
    split: str = "test",
    bond_in: float = observables.BOND_IN,
    bond_out: float = observables.BOND_OUT,
    graph_cutoff: float = 2.0,
    fire=None,
    progress: Callable[[int, int], None] | None = None,
    before_md: Callable[[int, int], None] | None = None,
) -> DatasetContent:
    """Build a dataset from BOTAN-style files (see the module documentation).

    Args:
        paths: input ``.npz`` files (one configuration each, same N and replica count).
        box: cubic box edge L.
        temperature: T of the data.
        engine: an :class:`tbotan.md.Engine` for the FIRE quench.
        tau_alpha: τα of the data (default: Table I's value at this T).
        label_time: time of the stored replica positions (default τα).
        split: split name written into the file.
        bond_in, bond_out, graph_cutoff: label and graph parameters.
        fire: :class:`tbotan.md.FireParameters` (default: the project's defaults).
        progress: called as progress(done, total) after each configuration.
        before_md: called as before_md(n_configurations, N) once every input is checked and
            before the quench (e.g. a memory check).
    """
    if not paths:
        raise BotanImportError("no input files given")
    box = _positive("--box", box)
    temperature = _positive("--temperature", temperature)
    tau_alpha = _positive("--tau-alpha", tau_alpha, allow_none=True)
    label_time = _positive("--label-time", label_time, allow_none=True)
    if tau_alpha is None:
        matches = [v for t, v in kalj.TABLE_I_TAU_ALPHA.items() if abs(t - temperature) < 1e-9]
        if not matches:
            raise BotanImportError(
                f"T = {temperature} is not a Table I temperature: give tau_alpha explicitly"
            )
        tau_alpha = matches[0]
    label_time = tau_alpha if label_time is None else label_time
    files = [read_botan_npz(p) for p in paths]
    n = files[0]["types"].shape[0]
    n_replicas = files[0]["positions"].shape[0]
    for p, f in zip(paths, files, strict=True):
        if f["types"].shape[0] != n or f["positions"].shape[0] != n_replicas:
            raise BotanImportError(f"{p}: N or replica count differs from {paths[0]}")
    L = float(box)
    if abs(n / L**3 - kalj.DENSITY) > 0.05 * kalj.DENSITY:
        raise BotanImportError(
            f"box {L} gives density {n / L**3:.4f} for N = {n}, far from KALJ's {kalj.DENSITY}: "
            "check --box"
        )
    for p, f in zip(paths, files, strict=True):
        check_unwrapped(p, f["initial_positions"], f["positions"], L)

    thermal = ConfigurationBatch(
        positions=np.stack([f["initial_positions"] for f in files]),
        types=np.stack([f["types"] for f in files]),
        box=np.full(3, L),
    )
    if before_md is not None:
        before_md(thermal.n_systems, thermal.n_particles)
    minimized = engine.minimize(thermal, fire)
    inherent = minimized.configurations
    records = []
    for c, f in enumerate(files):
        labels = configuration_labels(
            thermal_unwrapped=f["initial_positions"],
            final_unwrapped=f["positions"],
            inherent=inherent.positions[c],
            types=f["types"],
            box=L,
            bond_in=bond_in,
            bond_out=bond_out,
            graph_cutoff=graph_cutoff,
        )
        records.append(
            labels.record(
                types=thermal.types[c],
                thermal_positions=thermal.positions[c],
                inherent_positions=inherent.positions[c],
                inherent_energy=minimized.energy[c],
                origin=(c, 0),  # file c as system c
            )
        )
        if progress is not None:
            progress(c + 1, len(files))
    params = dict(
        temperature=temperature,
        tau_alpha=tau_alpha,
        label_time=label_time,
        box=L,
        bond_in=bond_in,
        bond_out=bond_out,
        graph_cutoff=graph_cutoff,
        files=[Path(p).name for p in paths],
    )
    attrs = dataset_attrs(
        temperature=temperature,
        tau_alpha=tau_alpha,
        tau_alpha_source="given",
        label_time=label_time,
        n_replicas=n_replicas,
        box_length=L,
        bond_in=bond_in,
        bond_out=bond_out,
        graph_cutoff=graph_cutoff,
        engine=engine.describe(),
        config_hash=cfgmod.section_hash(params),
        seeds=[],
        split=split,
        source="botan-import",
        inputs=[str(p) for p in paths],
    )
    return DatasetContent.from_configurations(attrs, records)


def check_user_npz(path: str | os.PathLike, box: float | None = None) -> None:
    """Check a user configuration ``.npz`` (``tbotan predict --npz``) before anything runs.

    Keys ``types`` (N,) and ``initial_positions`` (N, 3), optional ``inherent_positions``
    (N, 3) and ``box`` (L or (L, L, L)); integer types 0/1, real finite positions, a positive
    finite cubic box from the file or ``box`` (not both, unless they agree).

    Raises:
        BotanImportError: naming the file, the array and what is wrong.
    """
    path = Path(path)
    content = read_npz(path)
    missing = [k for k in ("types", "initial_positions") if k not in content]
    if missing:
        raise BotanImportError(f"{path}: missing arrays {missing} (has {sorted(content)})")
    types = check_types(path, content["types"])
    n = types.shape[0]
    for name in ("initial_positions", "inherent_positions"):
        if name not in content:
            continue
        if content[name].shape != (n, 3):
            raise BotanImportError(
                f"{path}: {name} has shape {content[name].shape}, expected (N, 3) = ({n}, 3)"
            )
        _real_array(path, name, content[name])
    if "box" in content:
        edges = _real_array(path, "box", content["box"]).ravel()
        if edges.size not in (1, 3) or np.any(edges <= 0):
            raise BotanImportError(
                f"{path}: box {edges.tolist()} must be a positive edge L or (L, L, L)"
            )
        if not np.allclose(edges, edges[0], rtol=1e-6, atol=0):
            raise BotanImportError(
                f"{path}: the box {edges.tolist()} is not cubic; tbotan assumes a cubic box"
            )
        if box is not None and not math.isclose(float(box), float(edges[0]), rel_tol=1e-9):
            raise BotanImportError(
                f"{path} stores the box {float(edges[0]):g} but --box {box:g} was given: drop "
                "--box, or fix the file"
            )
    elif box is None:
        raise BotanImportError(f"{path} stores no box: give its edge length (--box)")
    else:
        _positive("--box", box)
