"""Predictions of a trained T-BOTAN model: for dataset files and for single configurations.

A model file (``model.pt``, written by :mod:`tbotan.learning.training`) carries the configuration,
the input variant, the node target and the weights, so predictions always build the graphs the
model was trained on.  For every configuration the model predicts its node target per particle
(C_B or the propensity, ``model.node_target`` of its configuration; predictions files name it in
their ``node_target`` attribute), the edge labels, T_pred and the global embedding g^M;
results go to a predictions file (docs/formats.md) through
:func:`tbotan.formats.predictions.write_predictions`.

A user configuration (a GSD frame or a BOTAN-style ``.npz``) needs its inherent structure for
the ``is+ts`` and ``is`` variants: when only the thermal structure is given, it is quenched with
FIRE (the configuration's ``engine`` and ``quench`` sections).  Its graph is then built with
:func:`tbotan.learning.graphs.graph_from_positions` (the same neighbour search as the data stage)
and stored beside the predictions (``input/edge_index``, positions, types).  The temperature of a
user configuration is never an input; ``temperature`` only labels the output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tbotan.devices import resolve_device
from tbotan.errors import InputError, MissingInputError
from tbotan.formats.model_file import ModelFileError, read_model_file
from tbotan.learning.ensemble import combine_members, ensemble_attrs
from tbotan.learning.graphs import (
    check_node_target,
    check_variant,
    graph_from_dataset,
    graph_from_positions,
    graph_name,
)
from tbotan.learning.model import TBotan
from tbotan.physics import kalj


@dataclass
class TrainedModel:
    """A model file, loaded.

    Attributes:
        model: the network (eval mode, on ``device``).
        meta: everything else the file holds (config, variant, lambda_global, seed, epoch, ...).
        device: where the model runs.
    """

    model: TBotan
    meta: dict
    device: torch.device

    @property
    def variant(self) -> str:
        return self.meta["variant"]

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def node_target(self) -> str:
        """What the node output predicts: ``'cb'`` or ``'propensity'`` (``model.node_target``
        of the configuration the model was trained with; model files written before the key
        existed learned C_B)."""
        return self.config["model"].get("node_target", "cb")

    def attrs(self) -> dict:
        """The model's attributes of a predictions file."""
        m = self.meta
        return dict(
            model=m["model_id"],
            variant=m["variant"],
            seed=int(m["seed"]),
            lambda_global=float(m["lambda_global"]),
            epoch=int(m["epoch"]),
            edge_graph=graph_name(m["variant"]),
            node_target=self.node_target,
        )


def load_model(path: str | os.PathLike, device: str | None = "auto") -> TrainedModel:
    """Load ``model.pt`` (format checked) onto ``device`` (``'auto'``, ``'cpu'``, ``'cuda'``)."""
    from tbotan.learning.graphs import EDGE_FEATURES

    meta = read_model_file(path)
    try:
        check_variant(meta["variant"])
        check_node_target(meta["config"]["model"].get("node_target", "cb"))
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    hparams = meta["hparams"]
    if hparams.get("edge_features") != EDGE_FEATURES[meta["variant"]]:
        raise ModelFileError(
            f"{path}: variant {meta['variant']!r} takes {EDGE_FEATURES[meta['variant']]} edge "
            f"features, but the model was built for {hparams.get('edge_features')}"
        )
    try:
        model = TBotan(**hparams)
        model.load_state_dict(meta.pop("state_dict"))
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path}: its weights do not fit its hyper-parameters {hparams} ({first})"
        ) from None
    dev = resolve_device(device)
    model.to(dev).eval()
    meta["path"] = str(path)
    return TrainedModel(model=model, meta=meta, device=dev)


class NotApplicable(InputError, ValueError):
    """A configuration unlike the model's training data (density, composition or N)."""


#: Relative density difference and absolute A-fraction difference tolerated by
#: :func:`check_applicable`.
DENSITY_TOLERANCE = 0.01
FRACTION_TOLERANCE = 0.01


def check_applicable(
    trained: TrainedModel, n_particles: int, box_length: float, fraction_a: float, where: str
) -> None:
    """Refuse (:class:`NotApplicable`) a system unlike the model's training data.

    A model learns the local structure of one liquid at one density and composition, and its
    global head averages over systems of the training size: a configuration at another density
    (beyond ±1 %), composition (A fraction beyond ±0.01) or N is outside what it was trained on.
    Models written before the training data were recorded are not checked.
    """
    data = trained.meta.get("training_data")
    if not data:
        return
    density = n_particles / float(box_length) ** 3
    lo, hi = data["density"]
    problems = []
    if not lo * (1 - DENSITY_TOLERANCE) <= density <= hi * (1 + DENSITY_TOLERANCE):
        problems.append(
            f"density {density:.4g} (trained on {lo:.4g}–{hi:.4g}; accepted "
            f"{lo * (1 - DENSITY_TOLERANCE):.4g}–{hi * (1 + DENSITY_TOLERANCE):.4g})"
        )
    flo, fhi = data["fraction_a"]
    if not flo - FRACTION_TOLERANCE <= fraction_a <= fhi + FRACTION_TOLERANCE:
        problems.append(
            f"A fraction {fraction_a:.4g} (trained on {flo:.4g}–{fhi:.4g}; accepted "
            f"{flo - FRACTION_TOLERANCE:.4g}–{fhi + FRACTION_TOLERANCE:.4g})"
        )
    if int(n_particles) not in data["n_particles"]:
        problems.append(f"N = {n_particles} (trained on N = {data['n_particles']})")
    if problems:
        raise NotApplicable(
            f"{where}: {'; '.join(problems)}: outside the training data of {trained.meta['path']}; "
            "pass --allow-extrapolation to predict anyway"
        )


@torch.no_grad()
def predict_graph(trained: TrainedModel, data) -> dict[str, np.ndarray]:
    """Predictions for one graph: ``cb`` (N,), ``edge`` (E,), ``t_pred`` (), ``embedding`` (H,)."""
    dev = trained.device
    # tensors moved one by one: ``Data.to`` would move the caller's graph in place
    out = trained.model(data.x.to(dev), data.edge_index.to(dev), data.edge_attr.to(dev))
    return {name: getattr(out, name).float().cpu().numpy() for name in out._fields}


def as_members(trained: TrainedModel | Sequence[TrainedModel]) -> list[TrainedModel]:
    """One model or a seed ensemble as a checked list of members.

    Members must be seeds of one model: one input variant, graph cut-off, λ_g and node target.

    Raises:
        ModelFileError: no member, or members of different variants, cut-offs or λ_g.
    """
    members = [trained] if isinstance(trained, TrainedModel) else list(trained)
    if not members:
        raise ModelFileError("an ensemble needs at least one model file")
    for key, value in (
        ("variant", lambda m: m.variant),
        ("graph cut-off", lambda m: float(m.config["graph"]["cutoff"])),
        ("λ_g", lambda m: float(m.meta["lambda_global"])),
        ("node target", lambda m: m.node_target),
    ):
        found = {value(m) for m in members}
        if len(found) != 1:
            paths = [m.meta["path"] for m in members]
            raise ModelFileError(
                f"the models {paths} cannot form one ensemble: their {key}s differ ({found})"
            )
    return members


def predict_graph_members(members: Sequence[TrainedModel], data) -> dict[str, np.ndarray]:
    """Predictions of one model or a seed ensemble for one graph.

    One member: :func:`predict_graph`.  Several: their mean and spread
    (:func:`tbotan.learning.ensemble.combine_members`: ``cb``, ``edge``, ``t_pred`` means,
    ``*_std`` spreads, ``member_t_pred`` (K,), ``embedding`` (K·H,)).
    """
    if len(members) == 1:
        return predict_graph(members[0], data)
    return combine_members([predict_graph(m, data) for m in members])


def members_attrs(members: Sequence[TrainedModel]) -> dict:
    """The predictions-file attributes of one model or of an ensemble of members, with
    ``model_path`` (the model file, or the list of the members' files)."""
    paths = [m.meta["path"] for m in members]
    return dict(
        ensemble_attrs([m.attrs() for m in members]),
        model_path=paths if len(paths) > 1 else paths[0],
    )


def predict_dataset(
    trained: TrainedModel | Sequence[TrainedModel],
    dataset_path: str | os.PathLike,
    out_path: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    allow_extrapolation: bool = False,
) -> dict:
    """Predict every configuration of a dataset file and write a predictions file.

    Edge predictions follow the dataset's edge order of ``graph`` (variants ``is+ts``, ``is``)
    or ``graph_ts`` (``ts``), as the ``edge_graph`` attribute says.  A seed ensemble (several
    models) writes its members' mean and their spread (:func:`predict_graph_members`).

    Returns:
        Summary: ``node_target`` (what the node output predicts), ``pearson`` (per
        configuration, the Pearson correlation over type-A particles of the node output with the
        dataset's labels of that target) and ``t_pred`` (mean T_pred; of the ensemble mean for
        several models).
    """
    from tbotan.analysis.metrics import pearson
    from tbotan.formats.dataset import DatasetFile
    from tbotan.formats.predictions import write_predictions

    members = as_members(trained)
    trained = members[0]
    dataset = DatasetFile(dataset_path)
    cutoff = float(trained.config["graph"]["cutoff"])
    stored = float(dataset.attrs.get("graph_cutoff", cutoff))
    if abs(stored - cutoff) > 1e-9:
        raise NotApplicable(
            f"{dataset.path}: its graphs have cut-off {stored:g} σ_AA, the model "
            f"{trained.meta['path']} was trained on cut-off {cutoff:g}; rebuild the dataset "
            "with the model's graph.cutoff"
        )
    if not allow_extrapolation:
        types = dataset.configuration(0, graphs=())["types"]
        for member in members:
            check_applicable(
                member,
                dataset.n_particles,
                dataset.box_length,
                float(np.mean(types == kalj.TYPE_A)),
                str(dataset.path),
            )
    per_configuration, pearsons = [], []
    for c in range(dataset.n_configurations):
        data = graph_from_dataset(dataset, c, trained.variant, trained.node_target)
        pred = predict_graph_members(members, data)
        per_configuration.append(pred)
        a = data.a_mask.numpy()
        pearsons.append(float(pearson(pred["cb"][a], data.y[a])))
        if progress is not None:
            progress(c + 1, dataset.n_configurations)
    arrays = {
        key: np.concatenate([p[key] for p in per_configuration])
        if key in ("edge", "edge_std")
        else np.stack([p[key] for p in per_configuration], axis=-1 if key == "member_t_pred" else 0)
        for key in per_configuration[0]
    }
    attrs = dict(
        members_attrs(members),
        dataset=str(dataset.path),
        dataset_config_hash=str(dataset.attrs.get("config_hash", "")),
        temperature=dataset.temperature,
        split=str(dataset.attrs.get("split", "")),
    )
    write_predictions(out_path, **arrays, attrs=attrs)
    return {
        "node_target": trained.node_target,
        "pearson": pearsons,
        "t_pred": float(np.mean(arrays["t_pred"])),
    }


@dataclass
class UserConfiguration:
    """A configuration given by a user (no labels).

    Attributes:
        types: (N,) 0 = A, 1 = B.
        thermal_positions: (N, 3) thermal structure (σ_AA).
        inherent_positions: (N, 3) its inherent structure, or None (then quenched).
        box: (3,) box edges.
        source: where it came from (file and frame), for the output's attributes.
    """

    types: np.ndarray
    thermal_positions: np.ndarray
    inherent_positions: np.ndarray | None
    box: np.ndarray
    source: str


def read_user_configuration(
    *,
    gsd: str | os.PathLike | None = None,
    frame: int = 0,
    inherent_gsd: str | os.PathLike | None = None,
    npz: str | os.PathLike | None = None,
    box: float | None = None,
) -> UserConfiguration:
    """Read a configuration from a GSD frame or a BOTAN-style ``.npz``.

    GSD: frame ``frame`` of ``gsd`` is the thermal structure; ``inherent_gsd`` (same frame), if
    given, its inherent structure.  ``.npz``: ``types`` (N,), ``initial_positions`` (N, 3,
    thermal structure; BOTAN's name) and optionally ``inherent_positions`` (N, 3) and ``box``
    (L or (3,)); ``box`` is required when the file has none (BOTAN files store no box).
    """
    from tbotan.physics.configurations import ConfigurationError, read_gsd

    if (gsd is None) == (npz is None):
        raise ValueError("give exactly one of a GSD file and an .npz file")
    if gsd is not None:
        thermal = read_gsd(gsd, frames=[frame])
        inherent = None
        if inherent_gsd is not None:
            inherent = read_gsd(inherent_gsd, frames=[frame])
            if not np.array_equal(inherent.types, thermal.types):
                raise ConfigurationError(
                    f"{inherent_gsd} frame {frame}: types differ from {gsd} frame {frame}"
                )
            inherent = inherent.positions[0]
        return UserConfiguration(
            types=thermal.types[0],
            thermal_positions=thermal.positions[0],
            inherent_positions=inherent,
            box=thermal.box[0],
            source=f"{gsd} frame {frame}",
        )
    path = Path(npz)
    if not path.is_file():
        raise MissingInputError(f"configuration file not found: {path}")
    with np.load(path) as f:
        content = {k: f[k] for k in f.files}
    missing = [k for k in ("types", "initial_positions") if k not in content]
    if missing:
        raise ConfigurationError(f"{path}: missing arrays {missing} (has {sorted(content)})")
    if "box" in content:
        box_arr = np.broadcast_to(np.asarray(content["box"], np.float64), (3,)).copy()
    elif box is not None:
        box_arr = np.full(3, float(box))
    else:
        raise ConfigurationError(f"{path} stores no box: give its edge length (--box)")
    types = np.asarray(content["types"]).astype(np.int64)
    thermal = np.asarray(content["initial_positions"], np.float64)
    n = types.shape[0]
    if thermal.shape != (n, 3):
        raise ConfigurationError(
            f"{path}: initial_positions has shape {thermal.shape}, expected ({n}, 3)"
        )
    inherent = content.get("inherent_positions")
    if inherent is not None and np.shape(inherent) != (n, 3):
        raise ConfigurationError(
            f"{path}: inherent_positions has shape {np.shape(inherent)}, expected ({n}, 3)"
        )
    return UserConfiguration(
        types=types,
        thermal_positions=np.mod(thermal, box_arr),
        inherent_positions=None if inherent is None else np.mod(np.asarray(inherent), box_arr),
        box=box_arr,
        source=str(path),
    )


def check_no_overlaps(conf: UserConfiguration) -> None:
    """Refuse a thermal structure to be quenched whose particles overlap, naming the closest pair.

    Overlap: a pair closer than :data:`tbotan.md.MIN_DISTANCE` σ_μν, the limit at which every
    engine counts a system as blown up (FIRE would fail in the engine's own words, LAMMPS's
    "Lost atoms" for one).  Only a configuration given without its inherent structure is
    checked, the one FIRE starts from; a given inherent structure is taken as it is.

    Raises:
        ConfigurationError: naming the input, the pair (indices i < j, 0-based, and species),
            its distance (σ_AA) and its ratio to σ_μν.
    """
    from tbotan.md import MIN_DISTANCE
    from tbotan.physics.configurations import ConfigurationError

    if conf.inherent_positions is not None:
        return
    i, j, r, ratio = kalj.closest_pair(conf.thermal_positions, conf.types, conf.box)
    if ratio < MIN_DISTANCE:
        pair = "".join(kalj.TYPE_NAMES[int(conf.types[k])] for k in (i, j))
        raise ConfigurationError(
            f"{conf.source}: particles overlap, so FIRE cannot quench it: the closest pair, "
            f"particles {i} and {j} ({pair}), is {r:.4g} σ_AA apart ({ratio:.3f} σ_μν < "
            f"{MIN_DISTANCE}); the configuration is not a KALJ liquid (wrong units or box, "
            "duplicated particles?)"
        )


def quench_user_configuration(
    conf: UserConfiguration, engine, fire=None
) -> tuple[np.ndarray, float, int]:
    """Inherent structure of ``conf`` by FIRE: ((N, 3) positions, e_IS/N, FIRE steps).

    (One configuration, before predicting; the pipeline's quench of whole equilibrium files is
    :func:`tbotan.md.protocols.quench`.)
    """
    from tbotan.physics.configurations import ConfigurationBatch

    batch = ConfigurationBatch(conf.thermal_positions, conf.types, conf.box)
    result = engine.minimize(batch, fire)
    return (
        result.configurations.positions[0],
        float(result.energy[0]),
        int(result.steps[0]),
    )


def predict_configuration(
    trained: TrainedModel | Sequence[TrainedModel],
    conf: UserConfiguration,
    out_path: str | os.PathLike,
    temperature: float | None = None,
    engine=None,
    fire=None,
    allow_extrapolation: bool = False,
) -> dict[str, np.ndarray]:
    """Predict one user configuration and write a predictions file (C = 1).

    Args:
        trained: the model, or the members of a seed ensemble (their mean and spread are
            written).
        conf: the configuration; quenched with ``engine`` when the variant needs the inherent
            structure and ``conf`` has none.
        out_path: the predictions file.
        temperature: a label stored in the output (never an input; NaN when not given).
        engine, fire: the MD engine and FIRE parameters of the quench.
        allow_extrapolation: skip :func:`check_applicable` (density, composition, N).
    """
    from tbotan.formats.predictions import write_predictions

    members = as_members(trained)
    trained = members[0]
    if not allow_extrapolation:
        for member in members:
            check_applicable(
                member,
                len(conf.types),
                float(conf.box[0]),
                float(np.mean(conf.types == kalj.TYPE_A)),
                conf.source,
            )
    attrs_extra: dict = {}
    inherent = conf.inherent_positions
    if inherent is None and trained.variant != "ts":
        if engine is None:
            raise InputError(
                f"{conf.source}: the {trained.variant!r} model needs the inherent structure; "
                "give it, or an engine to quench the configuration"
            )
        inherent, e_is, steps = quench_user_configuration(conf, engine, fire)
        attrs_extra.update(quenched=True, inherent_energy=e_is, fire_steps=steps)
    else:
        attrs_extra.update(quenched=False)
    cutoff = float(trained.config["graph"]["cutoff"])
    data = graph_from_positions(
        variant=trained.variant,
        types=conf.types,
        thermal_positions=conf.thermal_positions,
        inherent_positions=inherent,
        box=conf.box,
        cutoff=cutoff,
        source=conf.source,
    )
    pred = predict_graph_members(members, data)
    attrs = dict(
        members_attrs(members),
        dataset=conf.source,
        dataset_config_hash="",
        temperature=float("nan") if temperature is None else float(temperature),
        split="user",
        graph_cutoff=cutoff,
        **attrs_extra,
    )
    inputs = {
        "types": np.asarray(conf.types, np.int8),
        "thermal_positions": np.asarray(conf.thermal_positions, np.float64),
        "box": np.asarray(conf.box, np.float64),
        "edge_index": data.edge_index.numpy().astype(np.int32),
    }
    if inherent is not None:
        inputs["inherent_positions"] = np.asarray(inherent, np.float64)
    write_predictions(
        out_path,
        **{
            k: v
            if k in ("edge", "edge_std")
            else np.expand_dims(v, -1 if k == "member_t_pred" else 0)
            for k, v in pred.items()
        },
        attrs=attrs,
        inputs=inputs,
    )
    return pred
