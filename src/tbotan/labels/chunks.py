"""From equilibrium and inherent structures to labelled chunks and dataset splits.

:func:`label_chunk` runs the isoconfigurational replicas of one chunk of configurations and
labels them; :func:`assemble_splits` joins the chunks of a temperature and cuts them into the
train / validation / test files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tbotan import config as cfgmod
from tbotan.errors import ConfigError, FileFormatError
from tbotan.formats.dataset import (
    DatasetContent,
    DatasetFile,
    dataset_attrs,
    select_configurations,
)
from tbotan.labels.replicas import configuration_labels
from tbotan.md.protocols import isoconfigurational
from tbotan.physics.configurations import (
    ConfigurationBatch,
    ConfigurationError,
    gsd_frame_count,
    gsd_log_present,
    read_gsd,
    read_gsd_logs,
    read_provenance,
)
from tbotan.pipeline import iso_parameters, tau_alpha_for_labels


def chunk_configurations(config: dict, T: float, chunk: int) -> np.ndarray:
    """Indices of the equilibrium configurations of chunk ``chunk`` at T."""
    per = config["iso"]["configurations_per_chunk"]
    needed = cfgmod.configurations_needed(config, T)
    return np.arange(chunk * per, min((chunk + 1) * per, needed))


@dataclass
class ChunkInputs:
    """The checked inputs of one chunk (read before any MD): see :func:`check_chunk_inputs`."""

    ids: np.ndarray
    thermal: ConfigurationBatch
    inherent: ConfigurationBatch
    system: np.ndarray
    sample: np.ndarray
    energy: np.ndarray
    notes: list[str] = field(default_factory=list)


def check_chunk_inputs(
    config: dict,
    T: float,
    chunk: int,
    equilibrium_gsd: str | os.PathLike,
    inherent_gsd: str | os.PathLike,
    tau_alpha_json: str | os.PathLike | None,
) -> ChunkInputs:
    """Read and check everything a chunk needs, so that bad input fails before any MD.

    The equilibrium and inherent-structure files must hold the chunk's frames, with the same
    types and box frame by frame; the inherent file must carry ``log/tbotan/energy`` (written by
    ``tbotan quench``); equilibrium files without provenance logs fall back to frame = system
    (with a note); a measured τα must be a positive number.
    """
    from tbotan.formats.io_utils import read_json

    ids = chunk_configurations(config, T, chunk)
    if ids.size == 0:
        raise ConfigError(f"chunk {chunk} of T = {T:g} holds no configurations")
    for path in (equilibrium_gsd, inherent_gsd):
        if gsd_frame_count(path) <= ids[-1]:
            raise FileFormatError(
                f"{path} has too few frames for chunk {chunk} (needs {ids[-1] + 1})"
            )
    thermal = read_gsd(equilibrium_gsd, frames=ids).with_velocities(None)
    inherent = read_gsd(inherent_gsd, frames=ids)
    present = gsd_log_present(inherent_gsd, "tbotan/energy")
    if not present[ids].all():
        frame = int(ids[np.argmin(present[ids])])
        raise ConfigurationError(
            f"{inherent_gsd} frame {frame} has no log/tbotan/energy (e_IS/N): it was not written "
            "by `tbotan quench`; run `tbotan quench` on the equilibrium file"
        )
    if inherent.n_particles != thermal.n_particles:
        raise ConfigurationError(
            f"{inherent_gsd} holds N = {inherent.n_particles}, {equilibrium_gsd} N = "
            f"{thermal.n_particles}: they are not the same configurations"
        )
    for c, frame in enumerate(ids):
        if not np.array_equal(inherent.types[c], thermal.types[c]) or not np.allclose(
            inherent.box[c], thermal.box[c], rtol=1e-6, atol=0
        ):
            raise ConfigurationError(
                f"{inherent_gsd} frame {frame}: types or box differ from {equilibrium_gsd} frame "
                f"{frame}; it is not the inherent structure of that configuration (rerun "
                "`tbotan quench`)"
            )
    energy = read_gsd_logs(inherent_gsd, "tbotan/energy", ids).ravel().astype(np.float64)
    if energy.shape != ids.shape or not np.all(np.isfinite(energy)):
        raise ConfigurationError(f"{inherent_gsd}: log/tbotan/energy is damaged or not finite")
    system, sample, note = read_provenance(equilibrium_gsd, ids)
    if config["tau_alpha"]["source"] == "measured" and tau_alpha_json is not None:
        data = read_json(tau_alpha_json)
        value = data.get("tau_alpha_measured") if isinstance(data, dict) else None
        if value is not None and not (
            isinstance(value, (int, float)) and math.isfinite(value) and value > 0
        ):
            raise FileFormatError(
                f"{tau_alpha_json}: tau_alpha_measured = {value!r} is not a positive number; "
                "rerun `tbotan tau-alpha`"
            )
    return ChunkInputs(ids, thermal, inherent, system, sample, energy, [note] if note else [])


def label_chunk(
    config: dict,
    T: float,
    chunk: int,
    equilibrium_gsd: str | os.PathLike,
    inherent_gsd: str | os.PathLike,
    tau_alpha_json: str | os.PathLike | None,
    engine,
    checkpoint_dir: str | os.PathLike | None = None,
    inputs: ChunkInputs | None = None,
) -> DatasetContent:
    """Replicas and labels of one chunk, as dataset content (split ``chunk``).

    ``inputs`` are the result of :func:`check_chunk_inputs` (read here when not given).
    """
    if inputs is None:
        inputs = check_chunk_inputs(config, T, chunk, equilibrium_gsd, inherent_gsd, tau_alpha_json)
    ids, thermal, inherent = inputs.ids, inputs.thermal, inputs.inherent
    tau_alpha, source = tau_alpha_for_labels(config, T, tau_alpha_json)
    params = iso_parameters(config, T, tau_alpha, source)
    final, extra = isoconfigurational(engine, thermal, ids, params, checkpoint_dir)
    iso, box = config["iso"], float(thermal.box[0, 0])
    system, sample, energy = inputs.system, inputs.sample, inputs.energy
    records = []
    start = thermal.unwrapped_positions()
    for c in range(len(ids)):
        lab = configuration_labels(
            thermal_unwrapped=start[c],
            final_unwrapped=final[c],
            inherent=inherent.positions[c],
            types=thermal.types[c],
            box=box,
            bond_in=iso["bond_in"],
            bond_out=iso["bond_out"],
            graph_cutoff=config["graph"]["cutoff"],
            extra_final_unwrapped=None if extra is None else extra[:, c],
        )
        records.append(
            lab.record(
                types=thermal.types[c],
                thermal_positions=thermal.positions[c],
                inherent_positions=inherent.positions[c],
                inherent_energy=energy[c],
                origin=(system[c], sample[c]),
            )
        )
    attrs = dataset_attrs(
        temperature=T,
        tau_alpha=tau_alpha,
        tau_alpha_source=source,
        label_time=params.label_time,
        n_replicas=params.n_replicas,
        box_length=box,
        bond_in=iso["bond_in"],
        bond_out=iso["bond_out"],
        graph_cutoff=config["graph"]["cutoff"],
        engine=engine.describe(),
        config_hash=cfgmod.section_hash(config),
        seeds=[config["seed"], params.seed],
        split="chunk",
        source="pipeline",
        ensemble=params.ensemble,
        chunk=int(chunk),
        configurations=ids.tolist(),
    )
    extra_times = None
    if extra is not None:
        extra_times = np.array([t / tau_alpha for t in params.extra_times if t < params.label_time])
    return DatasetContent.from_configurations(attrs, records, extra_times)


SPLIT_ORDER = ("test", "validation", "train")


def assemble_splits(config: dict, T: float, chunk_files: Sequence[str | os.PathLike]):
    """Join the label chunks of T and cut them into splits.

    Configurations are ordered as in the equilibrium file (system-major), and the splits take
    consecutive blocks in the order test, validation, train, so that the few configurations of
    one independent system fall into one split wherever possible.

    Returns:
        {split: DatasetContent} for the splits of T (only ``test`` for untrained temperatures).
    """
    parts = [DatasetFile(p) for p in chunk_files]
    for p in parts:
        if abs(p.temperature - T) > 1e-9:
            raise FileFormatError(f"{p.path} holds T = {p.temperature}, not {T}")
        ids = p.attrs.get("configurations")
        if not isinstance(p.attrs.get("chunk"), int) or not isinstance(ids, list):
            raise FileFormatError(
                f"{p.path} is not a label chunk of `tbotan iso` (no chunk and configurations "
                "attributes)"
            )
        if len(ids) != p.n_configurations:
            raise FileFormatError(
                f"{p.path}: attribute configurations lists {len(ids)} indices for "
                f"{p.n_configurations} configurations"
            )
    contents = sorted((p.load() for p in parts), key=lambda c: c.attrs["chunk"])
    ids = np.concatenate([c.attrs["configurations"] for c in contents])
    needed = cfgmod.configurations_needed(config, T)
    if not np.array_equal(ids, np.arange(needed)):
        raise FileFormatError(
            f"label chunks of T = {T:g} cover configurations {ids.min()}..{ids.max()} "
            f"({ids.size} of {needed}); some chunk is missing or duplicated"
        )
    joined = _concatenate(contents)
    sizes = cfgmod.split_sizes(config, T)
    out, first = {}, 0
    for split in SPLIT_ORDER:
        if sizes[split] == 0:
            continue
        idx = np.arange(first, first + sizes[split])
        first += sizes[split]
        out[split] = select_configurations(joined, idx, split)
    return out


def _concatenate(contents: list[DatasetContent]) -> DatasetContent:
    """The chunks as one content (attribute ``chunk`` dropped, ``configurations`` joined)."""
    attrs = dict(contents[0].attrs)
    attrs.pop("chunk", None)
    attrs["configurations"] = np.concatenate([c.attrs["configurations"] for c in contents]).tolist()
    records = (c.configuration(i, extras=True) for c in contents for i in range(c.n_configurations))
    return DatasetContent.from_configurations(attrs, records, contents[0].extra_times)


def split_file_names(config: dict, T: float) -> dict[str, str]:
    """{split: file name} of the dataset files of T, e.g. {'test': 'T0.50_test.h5'}."""
    label = cfgmod.temperature_label(T)
    return {s: f"T{label}_{s}.h5" for s, n in cfgmod.split_sizes(config, T).items() if n}
