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
        metrics :data:`METRICS`), ``t_pred_mean`` (of the ensemble), ``level``: the
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
        y = data.y.numpy()[a] if target == "cb" else propensity[a]
        level.append([mean["cb"][a].mean(), y.mean(), mean["cb"][a].std(), y.std()])
    return {
        "files": names,
        "node_target": target,
        "ensemble": {k: summarize(v, names, _favourable(k, target)) for k, v in ensemble.items()},
        "members": {
            str(seed): {k: summarize(v, names, _favourable(k, target)) for k, v in m.items()}
            for seed, m in per_member.items()
        },
        "t_pred_mean": round(float(np.mean(t_pred)), 4),
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
    from tbotan.config import NODE_TARGET_TEXT
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


def summary_line(card: Mapping) -> str:
    """One line of ``tbotan models``: name, targets, T and N ranges, held-out scores."""
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


def render_card(card: Mapping) -> str:
    """The card as Markdown (``card.md``, ``tbotan models --show NAME``)."""
    tr, app = card["training"], card["applicability"]
    lines = [
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
        f"- temperatures trained: {', '.join(f'{t:g}' for t in app['temperatures_trained'])}",
        f"- {app['note']}.",
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
