"""Pretrained seed ensembles shipped in the package, and their model cards.

The registry is package data: ``tbotan/data/models/<name>/`` holds the members
``seed<k>.pt`` (model files of docs/formats.md, float32 weights, no optimiser state),
``card.json`` (the model card, :data:`CARD_FORMAT`) and ``card.md`` (the card rendered by
:func:`render_card`).  ``tbotan models`` lists the registry, ``tbotan predict --model NAME``
predicts with a registered ensemble by name (:func:`resolve_model_arguments`), with no network
and no pipeline run.  ``scripts/train_pretrained.py`` regenerates an entry: it trains the members
and calls :func:`pack_members`, :func:`build_card` and :func:`write_registry_entry`.

Scores of a card (:func:`evaluate`): per configuration, the Pearson ρ over type-A particles of
the node output with the MD C_B labels (``rho_cb``) and with the propensity labels
(``rho_propensity``, with its sign: a C_B predictor correlates negatively with the propensity),
and the ρ over all edges of the edge output with the edge labels (``rho_edge``); for the
ensemble (the members' mean) and for every member.  Beside them the ridge baselines of
:mod:`tbotan.learning.baselines` fitted on the same training files (one for C_B, one for the
propensity; penalty chosen on the training files: there is none to spare).

An ensemble packed from a finished pipeline run (``kalj-mixed-T``: the reduced study's
main-model seeds) is scored per temperature instead (:func:`run_inputs`,
:func:`evaluate_temperatures`, :func:`attach_run_baselines`, :func:`benchmark_cpu_seconds`,
:func:`build_run_card`): :func:`evaluate` on the run's test split of every temperature, trained
or not, with T_pred / T, beside the pipeline's own baselines fitted on the run's training split
(:func:`tbotan.analysis.runs.run_baselines`: the ridge model of C_B and the quadratic fit of T
on U/N).  :func:`summary_line` and :func:`render_card` show either kind of card
(:func:`per_temperature` tells them apart).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from tbotan.errors import InputError

#: ``format`` of a ``card.json``; ``version`` is :data:`CARD_VERSION`.
CARD_FORMAT = "tbotan-model-card"
CARD_VERSION = 1
CARD_JSON = "card.json"
CARD_TEXT = "card.md"
#: Metrics of :func:`evaluate`, with the sign a good C_B predictor shows.
METRICS = ("rho_cb", "rho_propensity", "rho_edge")


class UnknownModel(InputError, ValueError):
    """``--model`` names neither a file nor a shipped model."""


def registry_dir() -> Path:
    """The folder of the shipped models (``tbotan/data/models`` of the installed package)."""
    return Path(__file__).resolve().parents[1] / "data" / "models"


def available() -> list[str]:
    """Names of the shipped models (sorted)."""
    root = registry_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CARD_JSON).is_file())


def _unknown(name: str) -> UnknownModel:
    names = ", ".join(available()) or "none"
    return UnknownModel(
        f"--model {name}: no such file and no shipped model of that name (shipped models: "
        f"{names}; `tbotan models` lists them)"
    )


def read_card(name: str) -> dict:
    """``card.json`` of the shipped model ``name``.

    Raises:
        UnknownModel: no shipped model of that name (the message lists the shipped ones).
    """
    import json

    if name not in available():
        raise _unknown(name)
    return json.loads((registry_dir() / name / CARD_JSON).read_text())


def member_paths(name: str) -> list[Path]:
    """The member files of the shipped model ``name``, in the card's order."""
    card = read_card(name)
    return [registry_dir() / name / m["file"] for m in card["members"]]


def resolve_model_arguments(models: Sequence[str]) -> tuple[list[str], str | None]:
    """``tbotan predict --model`` values as model files, and the shipped model's name if any.

    One value that is not an existing file and is a shipped model's name stands for that
    model's members; any other value is a model file (checked when loaded).

    Raises:
        UnknownModel: one value, neither a file nor a shipped model's name, with no path
            separator and no ``.pt`` suffix (a misspelt name rather than a missing file).
    """
    if len(models) == 1 and not Path(models[0]).exists():
        name = models[0]
        if name in available():
            return [str(p) for p in member_paths(name)], name
        if os.sep not in name and not name.endswith(".pt"):
            raise _unknown(name)
    return list(models), None


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ============================================================================ evaluation


def _favourable(metric: str, node_target: str) -> int:
    """+1 where a larger ρ is better, -1 where a more negative one is (the propensity of a C_B
    predictor, C_B of a propensity predictor)."""
    if metric == "rho_edge" or metric == f"rho_{node_target}":
        return 1
    return -1


def summarize(values: Sequence[float], names: Sequence[str], sign: int) -> dict:
    """Mean, worst configuration (the least favourable ρ for ``sign``) and every value."""
    v = np.asarray(values, dtype=np.float64)
    worst = int(np.argmin(sign * v))
    return {
        "mean": round(float(v.mean()), 4),
        "worst": round(float(v[worst]), 4),
        "worst_file": str(names[worst]),
        "per_configuration": [round(float(x), 4) for x in v],
    }


@torch.no_grad()
def evaluate(
    model_paths: Sequence[str | os.PathLike],
    dataset_path: str | os.PathLike,
    names: Sequence[str] | None = None,
) -> dict:
    """Scores of the members and of their ensemble on every configuration of a dataset file.

    Args:
        model_paths: the members' model files.
        dataset_path: a dataset file with C_B, propensity and edge labels.
        names: the configurations' source files, in order (default ``configuration <c>``).

    Returns:
        ``files`` (``names``), ``node_target``, ``ensemble``:
        {metric: summary} and ``members``: {seed: {metric: summary}} (:func:`summarize`;
        metrics :data:`METRICS`; each member's entry also ``t_pred_mean``, its T_pred averaged
        over the configurations), ``t_pred_mean`` and ``t_pred_per_configuration`` (of the
        ensemble, ε_AA/k_B), ``level``: the
        ensemble's node output and the labels of its target over the A particles, their mean
        and standard deviation per configuration, averaged over the configurations
        (``predicted_mean``, ``md_mean``, ``predicted_std``, ``md_std``): how far the output's
        level and scale are calibrated.
    """
    from tbotan.analysis.metrics import pearson
    from tbotan.formats.dataset import DatasetFile
    from tbotan.learning.ensemble import combine_members
    from tbotan.learning.graphs import graph_from_dataset
    from tbotan.learning.inference import as_members, load_model, predict_graph

    members = as_members([load_model(p, "cpu") for p in model_paths])
    dataset = DatasetFile(dataset_path)
    if names is None:
        names = [f"configuration {c}" for c in range(dataset.n_configurations)]
    if len(names) != dataset.n_configurations:
        raise ValueError(f"{len(names)} names for {dataset.n_configurations} configurations")
    names = [str(n) for n in names]
    variant, target = members[0].variant, members[0].node_target
    per_member = {m.meta["seed"]: {k: [] for k in METRICS} for m in members}
    ensemble = {k: [] for k in METRICS}
    t_pred, level = [], []
    member_t_pred: dict = {m.meta["seed"]: [] for m in members}
    for c in range(dataset.n_configurations):
        data = graph_from_dataset(dataset, c, variant, "cb")
        propensity = dataset.configuration(c, graphs=())["propensity"]
        a = data.a_mask.numpy()
        preds = [predict_graph(m, data) for m in members]
        mean = combine_members(preds)
        for scores, pred in [*zip(per_member.values(), preds, strict=True), (ensemble, mean)]:
            scores["rho_cb"].append(float(pearson(pred["cb"][a], data.y.numpy()[a])))
            scores["rho_propensity"].append(float(pearson(pred["cb"][a], propensity[a])))
            scores["rho_edge"].append(float(pearson(pred["edge"], data.y_edge.numpy())))
        t_pred.append(float(mean["t_pred"]))
        for m, pred in zip(members, preds, strict=True):
            member_t_pred[m.meta["seed"]].append(float(pred["t_pred"]))
        y = data.y.numpy()[a] if target == "cb" else propensity[a]
        level.append([mean["cb"][a].mean(), y.mean(), mean["cb"][a].std(), y.std()])
    return {
        "files": names,
        "node_target": target,
        "ensemble": {k: summarize(v, names, _favourable(k, target)) for k, v in ensemble.items()},
        "members": {
            str(seed): {
                **{k: summarize(v, names, _favourable(k, target)) for k, v in m.items()},
                "t_pred_mean": round(float(np.mean(member_t_pred[seed])), 4),
            }
            for seed, m in per_member.items()
        },
        "t_pred_mean": round(float(np.mean(t_pred)), 4),
        "t_pred_per_configuration": [round(t, 4) for t in t_pred],
        "level": dict(
            zip(
                ("predicted_mean", "md_mean", "predicted_std", "md_std"),
                (round(float(v), 4) for v in np.mean(level, axis=0)),
                strict=True,
            )
        ),
    }


def ridge_baselines(
    train_h5: str | os.PathLike, test_h5: Mapping[str, str], names: Mapping[str, Sequence[str]]
) -> dict:
    """The ridge baselines (C_B and propensity) fitted on ``train_h5`` (penalty chosen on it
    too), as {set name: {"cb": summary, "propensity": summary}} over the files of ``test_h5``
    ({set name: dataset file}; ``names``: {set name: its configurations' source files})."""
    from tbotan.learning.baselines import structural_baselines

    out: dict[str, dict] = {key: {} for key in test_h5}
    for target in ("cb", "propensity"):
        fit = structural_baselines([train_h5], [train_h5], dict(test_h5), node_target=target)
        for key in test_h5:
            rho = fit[target]["per_temperature"][key]["per_configuration"]
            out[key][target] = summarize(rho, names[key], 1)
            out[key][target]["penalty"] = fit[target]["penalty"]
    return out


# ============================================================================ a pipeline run


def configuration_names(label: str, split: str, n: int) -> list[str]:
    """Names of the ``n`` configurations of a run's dataset file ``T{label}_{split}.h5`` as a
    card shows them (``T0.80 test 3``)."""
    return [f"T{label} {split} {c}" for c in range(n)]


def run_inputs(run_dir: str | os.PathLike, config: Mapping) -> dict:
    """The files of a finished pipeline run that a run's ensemble is made of.

    Args:
        run_dir: the run folder (``<results_dir>/<run_name>``, e.g. ``results/reduced``).
        config: the run's resolved configuration (``run_dir/config.yaml``, validated).

    Returns:
        ``model_ids`` (the main model's seeds, :func:`tbotan.config.model_ids`), ``models``
        (their ``models/<id>/model.pt``), ``trained`` / ``untrained`` (temperature labels),
        ``train`` / ``validation`` ({label: ``datasets/T<label>_<split>.h5``} of the trained
        temperatures) and ``test`` ({label: file} of every temperature).

    Raises:
        InputError: any of these files is missing; the message names every missing one.
    """
    from tbotan import config as cfgmod

    run_dir = Path(run_dir)
    ids = cfgmod.model_ids(dict(config))["main"]
    trained = cfgmod.temperature_labels(dict(config), "train")
    every = cfgmod.temperature_labels(dict(config))
    datasets = run_dir / "datasets"
    found = {
        "model_ids": ids,
        "models": [run_dir / "models" / i / "model.pt" for i in ids],
        "trained": trained,
        "untrained": [t for t in every if t not in trained],
        "train": {t: datasets / f"T{t}_train.h5" for t in trained},
        "validation": {t: datasets / f"T{t}_validation.h5" for t in trained},
        "test": {t: datasets / f"T{t}_test.h5" for t in every},
    }
    wanted = [
        *found["models"],
        *found["train"].values(),
        *found["validation"].values(),
        *found["test"].values(),
    ]
    missing = [str(p.relative_to(run_dir)) for p in wanted if not p.is_file()]
    if missing:
        raise InputError(
            f"{run_dir}: the run is not finished: {len(missing)} of the {len(wanted)} files the "
            f"ensemble needs are missing: {', '.join(missing)} (the main model's seeds "
            f"{', '.join(ids)} and the datasets of T = {', '.join(every)}; run the pipeline "
            "first)"
        )
    return found


def evaluate_temperatures(
    model_paths: Sequence[str | os.PathLike],
    test_files: Mapping[str, str | os.PathLike],
    trained: Sequence[str],
) -> dict:
    """:func:`evaluate` on a test file per temperature, with T_pred against the MD temperature.

    Args:
        model_paths: the members' model files.
        test_files: {temperature label: dataset file} (a run's test splits).
        trained: the labels of the training temperatures.

    Returns:
        {label: :func:`evaluate`'s result for that file (configurations named by
        :func:`configuration_names`) plus ``temperature`` (the file's T, ε_AA/k_B),
        ``trained`` (bool) and ``t_ratio`` = mean T_pred / T of the ensemble (each member's
        entry also its own ``t_ratio``)}.
    """
    from tbotan.formats.dataset import DatasetFile

    out = {}
    for label, path in test_files.items():
        dataset = DatasetFile(path)
        temperature = float(dataset.temperature)
        names = configuration_names(label, str(dataset.attrs["split"]), dataset.n_configurations)
        ev = evaluate(model_paths, path, names)
        ev["temperature"] = temperature
        ev["trained"] = label in trained
        ev["t_ratio"] = round(ev["t_pred_mean"] / temperature, 4)
        for member in ev["members"].values():
            member["t_ratio"] = round(member["t_pred_mean"] / temperature, 4)
        out[label] = ev
    return out


def attach_run_baselines(evaluation: dict, baselines: Mapping) -> dict:
    """Put a run's structural baselines beside the ensemble's scores of each temperature.

    Args:
        evaluation: :func:`evaluate_temperatures`'s result (changed in place).
        baselines: :func:`tbotan.learning.baselines.structural_baselines` of the run, fitted
            on its training split (ridge penalty chosen on its validation split) and evaluated
            on the same test files (:func:`tbotan.analysis.runs.run_baselines`).

    Returns:
        What the card records of the fits: ``ridge_cb`` (features, penalty, fit temperatures
        and sizes) and ``t_from_energy`` (the quadratic T(U/N) fit: degree, coefficients in
        ascending powers of U/N, fit temperatures and size).  Each temperature of
        ``evaluation`` gets ``ridge`` ({``cb``: :func:`summarize` of the ridge's per-configuration
        ρ, plus its ``penalty``}) and ``t_from_energy`` ({``mean``, ``std_configurations``,
        ``rmse``, ``t_ratio``} of the fit's T over the test configurations).
    """
    ridge, fit = baselines["cb"], baselines["t_pred"]["thermal_energy"]
    for label, ev in evaluation.items():
        rho = ridge["per_temperature"][label]["per_configuration"]
        ev["ridge"] = {"cb": {**summarize(rho, ev["files"], 1), "penalty": ridge["penalty"]}}
        t = fit["per_temperature"][label]
        ev["t_from_energy"] = {
            "mean": round(t["mean"], 4),
            "std_configurations": round(t["std_configurations"], 4),
            "rmse": round(t["rmse"], 4),
            "t_ratio": round(t["mean"] / ev["temperature"], 4),
        }
    return {
        "ridge_cb": {
            k: ridge[k]
            for k in (
                "model",
                "features",
                "penalty",
                "selection",
                "fit_split",
                "fit_temperatures",
                "n_fit_configurations",
                "validation_split",
                "n_validation_configurations",
            )
        },
        "t_from_energy": {
            k: fit[k]
            for k in (
                "model",
                "feature",
                "degree",
                "coefficients",
                "fit_split",
                "fit_temperatures",
                "n_fit_configurations",
            )
        },
    }


def benchmark_cpu_seconds(run_dir: str | os.PathLike, model_ids: Sequence[str]) -> dict | None:
    """CPU and wall seconds of a run from its Snakemake ``benchmarks/<rule>/*.tsv`` files.

    Returns:
        ``stages``: {rule: {``jobs``, ``cpu_s``, ``wall_s``} summed over its jobs}, ``total``
        ({``cpu_s``, ``wall_s``} over every job), ``members``: {model id: {``cpu_s``,
        ``wall_s``}} of the ``train`` jobs of ``model_ids`` (those with a benchmark); None
        when the run has no benchmark file.  A job whose ``cpu_time`` is not a number counts
        its wall time only (``cpu_s`` then covers fewer jobs: ``jobs_without_cpu``).
    """
    import csv

    root = Path(run_dir) / "benchmarks"
    files = sorted(root.glob("*/*.tsv")) if root.is_dir() else []
    if not files:
        return None

    def number(text) -> float | None:
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        return value if np.isfinite(value) else None

    stages: dict[str, dict] = {}
    per_file: dict[Path, dict] = {}
    for path in files:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        cpu = [number(r.get("cpu_time")) for r in rows]
        wall = [number(r.get("s")) for r in rows]
        entry = {
            "cpu_s": sum(c for c in cpu if c is not None),
            "wall_s": sum(w for w in wall if w is not None),
            "without_cpu": sum(c is None for c in cpu),
        }
        per_file[path] = entry
        stage = stages.setdefault(
            path.parent.name, {"jobs": 0, "cpu_s": 0.0, "wall_s": 0.0, "jobs_without_cpu": 0}
        )
        stage["jobs"] += 1
        stage["cpu_s"] += entry["cpu_s"]
        stage["wall_s"] += entry["wall_s"]
        stage["jobs_without_cpu"] += int(entry["without_cpu"] > 0)
    for stage in stages.values():
        stage["cpu_s"], stage["wall_s"] = round(stage["cpu_s"], 1), round(stage["wall_s"], 1)
    members = {}
    for model in model_ids:
        entry = per_file.get(root / "train" / f"{model}.tsv")
        if entry is not None:
            members[model] = {
                "cpu_s": round(entry["cpu_s"], 1),
                "wall_s": round(entry["wall_s"], 1),
            }
    return {
        "stages": stages,
        "total": {
            "cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 1),
            "wall_s": round(sum(s["wall_s"] for s in stages.values()), 1),
        },
        "members": members,
    }


# ============================================================================ registry files


def pack_members(model_paths: Sequence[str | os.PathLike], folder: str | os.PathLike) -> list:
    """Write the model files as ``folder/seed<k>.pt``: every floating-point weight float32,
    nothing but the model file's keys (no optimiser state).  Returns the written paths."""
    from tbotan.formats.model_file import atomic_save, read_model_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in model_paths:
        meta = read_model_file(path)
        meta["state_dict"] = {
            k: v.detach().to(torch.float32) if v.is_floating_point() else v
            for k, v in meta["state_dict"].items()
        }
        out = folder / f"seed{int(meta['seed'])}.pt"
        atomic_save(meta, out)
        written.append(out)
    return written


def _card_identity(name: str, description: str, target: str) -> dict:
    """The first keys of every card: format, version, name, description, node target and the
    three outputs."""
    from tbotan.config import NODE_TARGET_TEXT

    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "name": name,
        "description": description,
        "node_target": target,
        "targets": [
            f"{NODE_TARGET_TEXT[target]} per particle (node output)",
            "edge labels of the inherent-structure graph (edge output)",
            "T (global output)",
        ],
    }


def build_card(
    name: str,
    description: str,
    member_files: Sequence[Path],
    runs: Mapping[int, Mapping],
    train_h5: Path,
    held_out_h5: Path,
    imports: Mapping[str, Mapping],
    ridge: Mapping[str, Mapping] | None = None,
    **recipe,
) -> dict:
    """The model card of a packed ensemble (``member_files`` from :func:`pack_members`;
    ``runs``: {seed: the training's command and CPU seconds}; ``imports``: the
    import commands, their files and hashes; ``ridge``: :func:`ridge_baselines` of the same
    files when already computed; ``recipe``: CPU model, threads, versions, the regeneration
    command)."""
    from tbotan.formats.model_file import read_model_file
    from tbotan.learning.inference import DENSITY_TOLERANCE, FRACTION_TOLERANCE

    metas = [read_model_file(p) for p in member_files]
    first = metas[0]
    config = first["config"]
    target = config["model"].get("node_target", "cb")
    sets = {"held_out": held_out_h5, "training_files": train_h5}
    names = {
        key: [f["name"] for f in imports["held_out" if key == "held_out" else "train"]["files"]]
        for key in sets
    }
    evaluation = {key: evaluate(member_files, path, names[key]) for key, path in sets.items()}
    if ridge is None:
        ridge = ridge_baselines(train_h5, {k: str(v) for k, v in sets.items()}, names)
    for key, scores in ridge.items():
        evaluation[key]["ridge"] = scores
    data = first["training_data"]
    return {
        **_card_identity(name, description, target),
        "members": [
            {
                "file": Path(p).name,
                "seed": int(m["seed"]),
                "epoch": int(m["epoch"]),
                "bytes": Path(p).stat().st_size,
                "sha256": sha256(p),
            }
            for p, m in zip(member_files, metas, strict=True)
        ],
        "training": {
            "data": "The public BOTAN repository (h3-Open-BDEC/pyg_botan, small_data/T0.44/"
            "train, files 1-5; H. Shiba et al., J. Chem. Phys. 158, 084503 (2023); Apache-2.0): "
            "Kob-Andersen LJ 80:20, N = 4096, L = 15.05658 (rho = 1.2), T = 0.44, C_B and "
            "propensity at t = tau_alpha = 4120 from 32 isoconfigurational runs",
            "files": imports["train"]["files"],
            "import_command": imports["train"]["command"],
            "import_cpu_s": imports["train"]["cpu_s"],
            "commands": {str(s): r["command"] for s, r in runs.items()},
            "cpu_s": {str(s): r["cpu_s"] for s, r in runs.items()},
            "config": {
                "variant": first["variant"],
                "lambda_global": float(first["lambda_global"]),
                "hparams": first["hparams"],
                "graph_cutoff": float(config["graph"]["cutoff"]),
                "training": {
                    k: config["training"][k]
                    for k in sorted(config["training"])
                    if k not in ("seeds", "device", "checkpoint_every")
                },
            },
            "seeds": [int(m["seed"]) for m in metas],
            "epochs": int(first["epochs_trained"]),
            "git_commit": first.get("git_commit", ""),
            **recipe,
        },
        "held_out_files": imports["held_out"]["files"],
        "held_out_import_command": imports["held_out"]["command"],
        "evaluation": evaluation,
        "applicability": {
            "species": ["A", "B"],
            "n_particles": data["n_particles"],
            "density": data["density"],
            "density_tolerance": DENSITY_TOLERANCE,
            "fraction_a": data["fraction_a"],
            "fraction_a_tolerance": FRACTION_TOLERANCE,
            "temperatures_trained": first["training_temperatures"],
            "note": "trained at T = 0.44 only: T_pred carries no information on other "
            "temperatures and the C_B predictions are untested there; tbotan predict refuses "
            "other N, densities beyond the tolerance and other compositions unless "
            "--allow-extrapolation is given (it does not check T, which is no input)",
        },
    }


def _plain(record: Mapping) -> dict:
    """A record of plain JSON values (NumPy and torch scalars as floats)."""
    import json

    return json.loads(json.dumps(dict(record), default=float))


def _training_config(meta: Mapping) -> dict:
    """The recipe of a member as a card records it (``training.config``)."""
    config = meta["config"]
    return {
        "variant": meta["variant"],
        "lambda_global": float(meta["lambda_global"]),
        "hparams": meta["hparams"],
        "graph_cutoff": float(config["graph"]["cutoff"]),
        "training": {
            k: config["training"][k]
            for k in sorted(config["training"])
            if k not in ("seeds", "device", "checkpoint_every")
        },
    }


def build_run_card(
    name: str,
    description: str,
    member_files: Sequence[Path],
    run_config: Mapping,
    inputs: Mapping,
    evaluation: Mapping,
    baselines: Mapping,
    cpu: Mapping | None,
    commands: Mapping[str, str],
    overlays: Sequence[str],
    **recipe,
) -> dict:
    """The model card of an ensemble packed from a finished pipeline run (``kalj-mixed-T``).

    Args:
        member_files: the packed members (:func:`pack_members` of the run's main-model seeds).
        run_config: the run's resolved configuration (``<run>/config.yaml``).
        inputs: :func:`run_inputs` of the run.
        evaluation: :func:`evaluate_temperatures` of the members on the run's test splits,
            with :func:`attach_run_baselines` applied; ``baselines`` what that returned.
        cpu: :func:`benchmark_cpu_seconds` of the run (None without benchmarks).
        commands: ``pipeline`` (the Snakemake command of the run) and ``package`` (this
            packaging); ``overlays``: the run's configuration files, in order.
        recipe: more of the packaging's provenance (Python and torch versions).

    Raises:
        ValueError: the members disagree on their configuration or training files (not one
            run's seed ensemble).
    """
    from tbotan import config as cfgmod
    from tbotan.formats.dataset import DatasetFile
    from tbotan.formats.model_file import read_model_file
    from tbotan.learning.inference import DENSITY_TOLERANCE, FRACTION_TOLERANCE

    metas = [read_model_file(p) for p in member_files]
    first = metas[0]
    for meta in metas[1:]:
        for key in ("config", "train_files", "validation_files", "variant", "lambda_global"):
            if meta[key] != first[key]:
                raise ValueError(
                    f"members seed {first['seed']} and seed {meta['seed']} differ in {key}: "
                    "not the seeds of one run's model"
                )
    target = first["config"]["model"].get("node_target", "cb")
    data = first["training_data"]
    trained = [float(t) for t in first["training_temperatures"]]
    untrained = [evaluation[t]["temperature"] for t in inputs["untrained"]]
    split_sizes = {t: cfgmod.split_sizes(dict(run_config), t) for t in inputs["test"]}
    n_train = sorted({v["train"] for t, v in split_sizes.items() if t in inputs["trained"]})
    n_validation = sorted(
        {v["validation"] for t, v in split_sizes.items() if t in inputs["trained"]}
    )
    one_test = DatasetFile(next(iter(inputs["test"].values())))
    iso = run_config["iso"]
    return {
        **_card_identity(name, description, target),
        "members": [
            {
                "file": Path(p).name,
                "seed": int(m["seed"]),
                "model_id": m["model_id"],
                "epoch": int(m["epoch"]),
                "bytes": Path(p).stat().st_size,
                "sha256": sha256(p),
            }
            for p, m in zip(member_files, metas, strict=True)
        ],
        "training": {
            "data": f"The pipeline's own Kob-Andersen LJ 80:20 liquids (run "
            f"{run_config['run_name']}, {run_config['engine']['name']} engine): N = "
            f"{', '.join(map(str, data['n_particles']))}, rho = {_span(data['density'])}, "
            f"trained on T = {', '.join(f'{t:g}' for t in trained)} together "
            f"({'/'.join(map(str, n_train))} training and {'/'.join(map(str, n_validation))} "
            f"validation configurations per temperature), C_B and propensity from "
            f"{one_test.attrs['n_replicas']} isoconfigurational runs at t = "
            f"{iso['label_time_tau_alpha']:g} tau_alpha(T) (tau_alpha: "
            f"{run_config['tau_alpha']['source']})",
            "run": {
                "run_name": run_config["run_name"],
                "config_overlays": list(overlays),
                "config_hash": cfgmod.section_hash(dict(run_config)),
                "member_config_hash": cfgmod.section_hash(dict(first["config"])),
                "dataset_config_hashes": {
                    Path(p).name: str(DatasetFile(p).attrs["config_hash"])
                    for group in ("train", "validation", "test")
                    for p in inputs[group].values()
                },
                "git_commit": first.get("git_commit", ""),
                "package_versions": first.get("package_versions", {}),
            },
            "model_ids": [m["model_id"] for m in metas],
            "train_files": [Path(f).name for f in first["train_files"]],
            "validation_files": [Path(f).name for f in first["validation_files"]],
            "commands": dict(commands),
            "cpu": cpu,
            "config": _training_config(first),
            "seeds": [int(m["seed"]) for m in metas],
            "epochs": int(first["epochs_trained"]),
            "global_refit": {
                s: _plain(m.get("global_refit") or {})
                for s, m in zip([str(int(m["seed"])) for m in metas], metas, strict=True)
            },
            "git_commit": first.get("git_commit", ""),
            **recipe,
        },
        "evaluation": {
            "split": "test",
            "about": "the run's test splits: configurations used neither for training nor for "
            "validation, at every temperature of the run, trained or not",
            "per_temperature": dict(evaluation),
            "baselines": dict(baselines),
        },
        "applicability": {
            "species": ["A", "B"],
            "n_particles": data["n_particles"],
            "density": data["density"],
            "density_tolerance": DENSITY_TOLERANCE,
            "fraction_a": data["fraction_a"],
            "fraction_a_tolerance": FRACTION_TOLERANCE,
            "temperatures_trained": first["training_temperatures"],
            "temperatures_tested_untrained": untrained,
            "note": f"trained on T = {_temperatures(trained)} together: T_pred is the global "
            "head's regression of T on the structure of these temperatures, tested inside the "
            f"range (also at the untrained {_temperatures(untrained) or 'none'}); outside "
            f"{_t_range(trained)} it "
            "is pulled back towards the trained range (a regression extrapolates no further "
            "than its data) and is no measurement of T, and the C_B predictions are "
            "untested there; tbotan predict refuses other N, densities beyond the tolerance "
            "and other compositions unless --allow-extrapolation is given (it does not check "
            "T, which is no input)",
        },
    }


def twin_verdict(twin_card: Mapping) -> dict:
    """Whether a propensity twin is shipped: its held-out mean ρ(propensity) must beat the
    propensity ridge baseline's; the numbers and the decision."""
    held = twin_card["evaluation"]["held_out"]
    net = held["ensemble"]["rho_propensity"]["mean"]
    ridge = held["ridge"]["propensity"]["mean"]
    shipped = net > ridge
    return {
        "name": twin_card["name"],
        "seeds": [m["seed"] for m in twin_card["members"]],
        "cpu_s": twin_card["training"]["cpu_s"],
        "held_out_rho_propensity": held["ensemble"]["rho_propensity"],
        "held_out_rho_cb": held["ensemble"]["rho_cb"],
        "ridge_propensity": held["ridge"]["propensity"],
        "shipped": bool(shipped),
        "decision": (
            f"shipped: held-out mean rho(propensity) {net:.3f} above the ridge baseline's "
            f"{ridge:.3f}"
            if shipped
            else f"not shipped: held-out mean rho(propensity) {net:.3f} does not beat the ridge "
            f"baseline's {ridge:.3f} (same recipe as C_B, 20 epochs; docs/results.md section 4: "
            "the propensity needs a longer training)"
        ),
    }


def write_registry_entry(folder: str | os.PathLike, card: Mapping) -> None:
    """Write ``card.json`` and ``card.md`` into ``folder`` (members already packed there)."""
    import json

    folder = Path(folder)
    (folder / CARD_JSON).write_text(json.dumps(card, indent=1) + "\n")
    (folder / CARD_TEXT).write_text(render_card(card))


# ============================================================================ rendering


#: The keys of the training section a card's text shows (card.json holds the whole section).
RECIPE_KEYS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "lr_schedule",
    "lr_warmup_epochs",
    "lr_final_factor",
    "warmup_epochs",
    "mse_mean_weight",
    "normalize_targets",
    "augment",
    "select_model",
    "lambda_node",
    "lambda_edge",
)


def _span(values: Sequence[float]) -> str:
    lo, hi = f"{min(values):.4g}", f"{max(values):.4g}"
    return lo if lo == hi else f"{lo}-{hi}"


def _row(label: str, s: Mapping) -> str:
    return f"| {label} | {s['mean']:+.3f} | {s['worst']:+.3f} ({s['worst_file']}) |"


def per_temperature(card: Mapping) -> bool:
    """Whether a card's scores are per temperature (an ensemble packed from a pipeline run,
    :func:`build_run_card`) rather than on one held-out set (:func:`build_card`)."""
    return "per_temperature" in card["evaluation"]


def _temperatures(values: Sequence[float]) -> str:
    return ", ".join(f"{float(t):g}" for t in values)


def _t_range(values: Sequence[float]) -> str:
    lo, hi = min(map(float, values)), max(map(float, values))
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _members(k: int) -> str:
    return f"{k} member{'s' if k != 1 else ''}"


def run_description(meta: Mapping, run_config: Mapping) -> str:
    """The description of an ensemble packed from a run, from its first member's model file
    and the run's configuration (what the card's first paragraph says)."""
    hp, data = meta["hparams"], meta["training_data"]
    trained = [float(t) for t in meta["training_temperatures"]]
    seeds = run_config["training"]["seeds"]
    return (
        f"T-BOTAN ({meta['variant']}, H = {hp['hidden']}, {hp['message_passing_steps']} "
        f"message-passing steps, lambda_g {float(meta['lambda_global']):g}) trained by the "
        f"pipeline's run {run_config['run_name']} on its own Kob-Andersen LJ 80:20 liquids, "
        f"N = {', '.join(map(str, data['n_particles']))}, rho = {_span(data['density'])}, at "
        f"T = {_temperatures(trained)} together, an ensemble of "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}: predicts "
        "C_B (bond-breaking) per particle, the edge labels and T"
    )


def _mean_over(entries: Sequence[Mapping], *keys: str) -> float:
    values = []
    for entry in entries:
        for key in keys:
            entry = entry[key]
        values.append(float(entry))
    return float(np.mean(values))


def _run_summary_line(card: Mapping) -> str:
    app = card["applicability"]
    per_t = card["evaluation"]["per_temperature"]
    temps = [float(t) for t in app["temperatures_trained"]]
    n = app["n_particles"]
    parts = []
    for title, trained in (("trained T", True), ("untrained T", False)):
        group = [e for e in per_t.values() if e["trained"] is trained]
        if not group:
            continue
        parts.append(
            f"{title} rho_cb {_mean_over(group, 'ensemble', 'rho_cb', 'mean'):.3f} (ridge "
            f"{_mean_over(group, 'ridge', 'cb', 'mean'):.3f})"
        )
    ratios = [e["t_ratio"] for e in per_t.values()]
    fits = [e["t_from_energy"]["t_ratio"] for e in per_t.values()]
    untrained = app.get("temperatures_tested_untrained", [])
    return (
        f"{card['name']}: {card['node_target']} + edges + T; T {_t_range(temps)} "
        f"(trained{f'; also tested at {_temperatures(untrained)}' if untrained else ''}); "
        f"N {n[0] if len(n) == 1 else f'{min(n)}-{max(n)}'}; test splits "
        f"({sum(len(e['files']) for e in per_t.values())} configurations, mean over T): "
        + "; ".join(parts)
        + f"; T_pred/T {min(ratios):.3f}-{max(ratios):.3f} (T(U/N) fit "
        f"{min(fits):.3f}-{max(fits):.3f}); {_members(len(card['members']))}"
    )


def summary_line(card: Mapping) -> str:
    """One line of ``tbotan models``: name, targets, T and N ranges, held-out scores."""
    if per_temperature(card):
        return _run_summary_line(card)
    app = card["applicability"]
    held = card["evaluation"]["held_out"]
    ens, ridge = held["ensemble"], held["ridge"]
    temps = app["temperatures_trained"]
    t_range = f"{min(temps):g}" if min(temps) == max(temps) else f"{min(temps):g}-{max(temps):g}"
    n = app["n_particles"]
    own = f"rho_{card['node_target']}"
    return (
        f"{card['name']}: {card['node_target']} + edges + T; T {t_range} (trained); "
        f"N {n[0] if len(n) == 1 else f'{min(n)}-{max(n)}'}; held-out "
        f"({len(held['files'])} configurations) {own} {ens[own]['mean']:.3f} "
        f"(ridge {ridge[card['node_target']]['mean']:.3f}), rho_propensity "
        f"{ens['rho_propensity']['mean']:+.3f} (ridge on the propensity "
        f"{ridge['propensity']['mean']:+.3f}); {len(card['members'])} members"
    )


def _recipe_line(tr: Mapping) -> str:
    return (
        f"Recipe: variant {tr['config']['variant']}, lambda_g {tr['config']['lambda_global']:g}, "
        f"graph cut-off {tr['config']['graph_cutoff']:g}, {tr['epochs']} epochs, "
        f"hyper-parameters {tr['config']['hparams']}, training "
        + ", ".join(
            f"{k} {tr['config']['training'][k]}"
            for k in RECIPE_KEYS
            if k in tr["config"]["training"]
        )
        + " (card.json: the whole training section)."
    )


def _card_head(card: Mapping, *temperature_lines: str) -> list[str]:
    """The first lines of a card: title, description, outputs, use, and the applicability range
    with ``temperature_lines`` and the card's note."""
    app = card["applicability"]
    return [
        f"# Model card: {card['name']}",
        "",
        card["description"] + ".",
        "",
        "Outputs: " + "; ".join(card["targets"]) + ".",
        "",
        "## Use",
        "",
        "```bash",
        f"tbotan predict --model {card['name']} --gsd my.gsd --output my_predictions.h5",
        "```",
        "",
        "## Applicability (enforced by tbotan predict)",
        "",
        f"- species: {', '.join(app['species'])} (Kob-Andersen LJ; types 0 = A, 1 = B)",
        f"- N: {', '.join(map(str, app['n_particles']))}",
        f"- number density: {_span(app['density'])} (accepted within "
        f"±{100 * app['density_tolerance']:g} %)",
        f"- A fraction: {_span(app['fraction_a'])} (accepted within "
        f"±{app['fraction_a_tolerance']:g})",
        *temperature_lines,
        f"- {app['note']}.",
    ]


def _render_run_card(card: Mapping) -> str:
    """:func:`render_card` of a card of :func:`build_run_card`."""
    tr, app = card["training"], card["applicability"]
    ev = card["evaluation"]
    per_t = ev["per_temperature"]
    labels = sorted(per_t, key=float)
    seeds = list(next(iter(per_t.values()))["members"])
    fits = ev["baselines"]
    ridge, t_fit = fits["ridge_cb"], fits["t_from_energy"]
    lines = [
        *_card_head(
            card,
            f"- temperatures trained: {_temperatures(app['temperatures_trained'])}",
            f"- temperatures tested, never trained on: "
            f"{_temperatures(app['temperatures_tested_untrained']) or 'none'}",
        ),
        "",
        "## Held-out scores (the run's test splits)",
        "",
        f"{sum(len(per_t[t]['files']) for t in labels)} configurations never used in training "
        "or validation (the run's test split of every temperature). Pearson rho over the "
        "type-A particles per configuration (edges: over all edges); mean over the "
        "configurations and the worst configuration; rho_propensity is the node output "
        "against the propensity, with its sign. T_pred: the ensemble's global output averaged "
        "over the configurations, against the MD temperature T. Baselines fitted on the run's "
        f"training split (T = {_temperatures(ridge['fit_temperatures'])}, "
        f"{ridge['n_fit_configurations']} configurations): the ridge regression of C_B on "
        f"{len(ridge['features'])} local-structure descriptors (penalty {ridge['penalty']:g}, "
        f"chosen on the validation split), and the degree-{t_fit['degree']} least-squares fit "
        "of T on U/N of the thermal configuration.",
        "",
        "| T | trained | configurations | ensemble rho(C_B) mean | worst | ridge rho(C_B) mean "
        "| worst | ensemble rho(propensity) | ensemble rho(edge) | T_pred | T_pred/T "
        "| T(U/N) fit | fit/T |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in labels:
        e = per_t[t]
        ens, rid = e["ensemble"], e["ridge"]["cb"]
        lines.append(
            f"| {e['temperature']:g} | {'yes' if e['trained'] else 'no'} | {len(e['files'])} "
            f"| {ens['rho_cb']['mean']:+.3f} | {ens['rho_cb']['worst']:+.3f} "
            f"| {rid['mean']:+.3f} | {rid['worst']:+.3f} "
            f"| {ens['rho_propensity']['mean']:+.3f} | {ens['rho_edge']['mean']:+.3f} "
            f"| {e['t_pred_mean']:.4f} | {e['t_ratio']:.3f} "
            f"| {e['t_from_energy']['mean']:.4f} | {e['t_from_energy']['t_ratio']:.3f} |"
        )
    lines += [
        "",
        "Members (seed spread): rho(C_B) mean over the configurations, and T_pred/T.",
        "",
        "| T | "
        + " | ".join(f"seed {s} rho_cb" for s in seeds)
        + " | "
        + " | ".join(f"seed {s} T_pred/T" for s in seeds)
        + " |",
        "|---|" + "---|" * (2 * len(seeds)),
    ]
    for t in labels:
        members = per_t[t]["members"]
        lines.append(
            f"| {per_t[t]['temperature']:g} | "
            + " | ".join(f"{members[s]['rho_cb']['mean']:+.3f}" for s in seeds)
            + " | "
            + " | ".join(f"{members[s]['t_ratio']:.3f}" for s in seeds)
            + " |"
        )
    lines += [""]
    if tr["config"]["training"].get("mse_mean_weight", 1.0) == 0:
        lines += [
            "The recipe drops the per-configuration mean from its loss (mse_mean_weight 0): "
            "the node output ranks the particles of a configuration (what rho measures); its "
            "level and scale are not calibrated C_B values (card.json: `level` per "
            "temperature).",
            "",
        ]
    run = tr["run"]
    lines += [
        "## Training",
        "",
        tr["data"] + ".",
        "",
        f"Run configuration: {' '.join(run['config_overlays'])} (resolved configuration hash "
        f"{run['config_hash']}; the members' recorded configuration {run['member_config_hash']}"
        f"); tbotan commit {run['git_commit'] or 'unknown'}; training with tbotan "
        f"{run['package_versions'].get('tbotan', '?')}, torch "
        f"{run['package_versions'].get('torch', '?')}.",
        "",
        f"Members: the run's main model {', '.join(tr['model_ids'])}; trained on "
        f"{', '.join(tr['train_files'])}, validated on {', '.join(tr['validation_files'])}.",
        "",
    ]
    cpu = tr.get("cpu")
    if cpu:
        stages = ", ".join(f"{k} {v['cpu_s']:.0f}" for k, v in sorted(cpu["stages"].items()))
        lines += [
            f"CPU seconds of the whole run (Snakemake benchmarks, every job of the run, "
            f"ablations included; sampled by Snakemake, so a lower bound): "
            f"{cpu['total']['cpu_s']:.0f} ({stages}); wall seconds "
            f"summed over the jobs {cpu['total']['wall_s']:.0f}.",
        ]
        if cpu["members"]:
            lines += [
                "Training of the members (CPU s): "
                + ", ".join(f"{k} {v['cpu_s']:.0f}" for k, v in cpu["members"].items())
                + ".",
            ]
        lines += [""]
    refits = {s: r for s, r in tr.get("global_refit", {}).items() if r}
    lines += [_recipe_line(tr), ""]
    if refits:
        lines += [
            "Global head refitted on the final trunk (training.global_refit_epochs "
            f"{tr['config']['training'].get('global_refit_epochs')}), T-RMSE before -> after "
            "on the "
            + next(iter(refits.values())).get("selected_on", "validation")
            + " set: "
            + ", ".join(
                f"seed {s} {r['t_rmse_before']:.4f} -> {r['t_rmse_after']:.4f}"
                for s, r in refits.items()
            )
            + ".",
            "",
        ]
    lines += [
        "Regenerate (from the repository root):",
        "",
        f"1. `{tr['commands']['pipeline']}`",
        f"2. `{tr['commands']['package']}`",
        "",
        "Members: "
        + ", ".join(f"{m['file']} (seed {m['seed']}, {m['bytes']} bytes)" for m in card["members"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def render_card(card: Mapping) -> str:
    """The card as Markdown (``card.md``, ``tbotan models --show NAME``)."""
    if per_temperature(card):
        return _render_run_card(card)
    tr, app = card["training"], card["applicability"]
    lines = [
        *_card_head(
            card,
            f"- temperatures trained: {', '.join(f'{t:g}' for t in app['temperatures_trained'])}",
        ),
        "",
        "## Held-out scores",
        "",
        f"{len(card['evaluation']['held_out']['files'])} real configurations never seen in "
        f"training: {', '.join(card['evaluation']['held_out']['files'])}. Pearson rho over the "
        "type-A particles per configuration (edges: over all edges); mean over the "
        "configurations and the worst configuration. rho_propensity is the node output against "
        "the propensity, with its sign.",
        "",
    ]
    for key, title in (("held_out", "Held out"), ("training_files", "Training files (in-sample)")):
        ev = card["evaluation"][key]
        ens, ridge = ev["ensemble"], ev["ridge"]
        lines += [
            f"### {title}",
            "",
            "| score | mean | worst (file) |",
            "|---|---|---|",
            _row("ensemble rho(node output, C_B)", ens["rho_cb"]),
            _row("ridge baseline on C_B", ridge["cb"]),
            _row("ensemble rho(node output, propensity)", ens["rho_propensity"]),
            _row("ridge baseline on the propensity", ridge["propensity"]),
            _row("ensemble rho(edge output, edge labels)", ens["rho_edge"]),
            "",
            "Members (seed spread), mean over the configurations:",
            "",
            "| seed | rho_cb | rho_propensity | rho_edge |",
            "|---|---|---|---|",
        ]
        for seed, m in ev["members"].items():
            lines.append(
                f"| {seed} | {m['rho_cb']['mean']:+.3f} | {m['rho_propensity']['mean']:+.3f} | "
                f"{m['rho_edge']['mean']:+.3f} |"
            )
        lines += ["", f"Mean T_pred: {ev['t_pred_mean']:.4f}."]
        if "level" in ev:
            lv = ev["level"]
            lines += [
                "",
                f"Level and scale of the node output over the A particles (per configuration, "
                f"averaged): mean {lv['predicted_mean']:.3f} (MD {lv['md_mean']:.3f}), "
                f"standard deviation {lv['predicted_std']:.3f} (MD {lv['md_std']:.3f}).",
            ]
            if card["training"]["config"]["training"].get("mse_mean_weight", 1.0) == 0:
                lines += [
                    "The recipe drops the per-configuration mean from its loss "
                    "(mse_mean_weight 0): the output ranks the particles of a configuration "
                    "(what rho measures); its level and scale are not calibrated C_B values.",
                ]
        lines += [""]
    lines += [
        "## Training",
        "",
        tr["data"] + ".",
        "",
        "Files (sha256):",
        "",
        *[f"- {f['name']}: `{f['sha256']}`" for f in tr["files"]],
        "",
        f"Import: `{tr['import_command']}`",
        "",
        "Training, one command per seed:",
        "",
        *[f"- seed {s}: `{c}` ({tr['cpu_s'][s]:.0f} CPU s)" for s, c in tr["commands"].items()],
        "",
        f"CPU: {tr['cpu_model']}, {tr['threads']} thread; Python {tr['python']}, torch "
        f"{tr['torch']}; tbotan commit {tr['git_commit'] or 'unknown'}.",
        "",
        f"Recipe: variant {tr['config']['variant']}, lambda_g {tr['config']['lambda_global']:g}, "
        f"graph cut-off {tr['config']['graph_cutoff']:g}, {tr['epochs']} epochs, "
        f"hyper-parameters {tr['config']['hparams']}, training "
        + ", ".join(
            f"{k} {tr['config']['training'][k]}"
            for k in RECIPE_KEYS
            if k in tr["config"]["training"]
        )
        + " (card.json: the whole training section).",
        "",
        f"Regenerate: `{tr['script']}`",
        "",
        "Members: "
        + ", ".join(f"{m['file']} (seed {m['seed']}, {m['bytes']} bytes)" for m in card["members"])
        + ".",
        "",
    ]
    twin = card.get("propensity_twin")
    if twin:
        lines += [
            "## Propensity twin",
            "",
            f"{twin['name']} (model.node_target: propensity, seeds {twin['seeds']}, "
            f"{', '.join(f'{v:.0f}' for v in twin['cpu_s'].values())} CPU s): held-out "
            f"rho(propensity) mean {twin['held_out_rho_propensity']['mean']:+.3f}, worst "
            f"{twin['held_out_rho_propensity']['worst']:+.3f}; ridge baseline on the "
            f"propensity {twin['ridge_propensity']['mean']:+.3f}. "
            f"{twin['decision'][:1].upper()}{twin['decision'][1:]}.",
            "",
        ]
    return "\n".join(lines)
