"""The machine-readable summary of a run (``summary.json``) and its Markdown form.

:func:`summarise` turns a :class:`tbotan.analysis.runs.RunAnalysis` into plain JSON-ready data;
:func:`summary_markdown` renders it as ``summary.md``.
"""

from __future__ import annotations

import math

import numpy as np

from tbotan.analysis.runs import RunAnalysis

# ============================================================================ summary


def summarise(run: RunAnalysis) -> dict:
    """A JSON-ready summary of every observable (NaN written as null).

    Keys: ``run_dir``, ``split``, ``temperatures`` (label, T, trained, C, τα, t), ``main_group``,
    ``models``, ``groups`` ({group: {variant, lambda_global, seeds, per_temperature: {T:
    {pearson_node, pearson_edge, t_pred, t_pred_ratio}}}}), ``embedding_distance`` (per group:
    labels, seeds, D, per_seed), ``sb`` ({T: {q, n_vectors, md, md_std_configurations,
    prediction: {group: {mean, std_seeds}}}}), ``t_pred_distribution`` ({group: {T: {edges,
    density}}}), ``baselines`` (:func:`tbotan.learning.baselines.structural_baselines`: models,
    features, penalty, fit split, per-temperature numbers; null when not computed),
    ``notes``.  With baselines, every entry of ``temperatures`` and every per-temperature
    entry of a group also carries ``baseline_pearson_cb`` ({mean, std_configurations,
    n_configurations}: ridge C_B baseline), ``baseline_t_pred`` and
    ``baseline_t_pred_inherent`` ({mean, std_configurations, rmse, n_configurations}: T fitted
    on U/N of the thermal configuration, on e_IS/N).
    """
    out: dict = {
        "run_dir": str(run.run_dir),
        "split": run.split,
        "temperatures": [
            {
                "label": t.label,
                "T": t.T,
                "trained": t.trained,
                "n_configurations": t.n_configurations,
                "n_particles": t.n_particles,
                "tau_alpha": t.tau_alpha,
                "label_time": t.label_time,
            }
            for t in run.temperatures
        ],
        "main_group": run.main_group.name,
        "models": [m.name for m in run.models],
        "groups": {},
        "embedding_distance": {},
        "sb": {},
        "t_pred_distribution": {},
        "baselines": run.baselines,
        "notes": list(run.notes),
    }
    for entry in out["temperatures"]:
        entry.update(_baseline_entries(run, entry["label"]))
    for group in run.groups():
        per_t = {}
        dists = {}
        for t in run.temperatures:
            node = run.pearson(group, t.label, "node")
            if node is None:
                continue
            tp = run.t_pred(group, t.label)
            per_t[t.label] = {
                "pearson_node": node.to_dict(),
                "pearson_edge": run.pearson(group, t.label, "edge").to_dict(),
                "t_pred": tp.to_dict(),
                "t_pred_ratio": {
                    "mean": tp.mean / t.T,
                    "std_configurations": tp.std_configurations / t.T,
                },
                **_baseline_entries(run, t.label),
            }
            ensemble = run.ensemble(group, t.label)
            if ensemble is not None:
                per_t[t.label]["ensemble"] = _ensemble_entry(run, ensemble, t)
            dist = run.t_pred_distribution(group, t.label)
            dists[t.label] = {
                "edges": dist["edges"],
                "density": dist["density"],
                "per_seed": {
                    str(m.seed): run.t_pred_distribution(group, t.label, m.seed)["density"]
                    for m in run.seeds(group)
                    if (m.name, t.label) in run.results
                },
            }
        out["groups"][group.name] = {
            "variant": group.variant,
            "lambda_global": group.lambda_global,
            "seeds": [m.seed for m in run.seeds(group)],
            "per_temperature": per_t,
        }
        out["t_pred_distribution"][group.name] = dists
        d = run.embedding_distances(group)
        if d is not None:
            out["embedding_distance"][group.name] = {
                "labels": d["labels"],
                "seeds": d["seeds"],
                "D": d["D"],
                "per_seed": {str(s): m for s, m in zip(d["seeds"], d["per_seed"], strict=True)},
            }
    for t in run.temperatures:
        entry = {
            "q": t.sb.q,
            "n_vectors": t.sb.counts,
            "md": t.sb.mean,
            "md_std_configurations": t.sb.per_configuration.std(axis=0),
            "prediction": {},
        }
        for group in run.groups():
            pred = run.sb_prediction(group, t.label)
            if pred is not None:
                entry["prediction"][group.name] = {"mean": pred[0], "std_seeds": pred[1]}
                ensemble = run.ensemble(group, t.label)
                if ensemble is not None:
                    entry["prediction"][group.name]["ensemble"] = ensemble.sb.mean(axis=0)
        out["sb"][t.label] = entry
    return _json_ready(out)


def _ensemble_entry(run: RunAnalysis, ensemble, t) -> dict:
    """A group's seed ensemble at T: node and edge ρ of the members' mean prediction (mean
    and spread over configurations), its worst test configuration beside the ridge
    baseline's ρ on that configuration (and the baseline's own worst), T_pred of the
    ensemble and the members' spread."""
    node = ensemble.pearson_node
    worst = int(np.argmin(node))
    entry = {
        "pearson_node": {
            "mean": float(node.mean()),
            "std_configurations": float(node.std()),
            "per_configuration": node,
        },
        "pearson_edge": {
            "mean": float(ensemble.pearson_edge.mean()),
            "std_configurations": float(ensemble.pearson_edge.std()),
        },
        "worst_configuration": {"index": worst, "pearson_node": float(node[worst])},
        "t_pred": {
            "mean": float(ensemble.t_pred.mean()),
            "std_configurations": float(ensemble.t_pred.std()),
            "std_members": float(ensemble.t_pred_std.mean()),
        },
        "t_pred_ratio": float(ensemble.t_pred.mean() / t.T),
        "cb_std_members": float(ensemble.cb_std.mean()),
    }
    base = run.baseline_pearson(t.label)
    if base is not None and "per_configuration" in base:
        rho = np.asarray(base["per_configuration"])
        entry["worst_configuration"]["baseline_pearson_node"] = float(rho[worst])
        entry["baseline_worst_configuration"] = {
            "index": int(np.argmin(rho)),
            "pearson_node": float(rho.min()),
        }
    return entry


def _baseline_entries(run: RunAnalysis, label: str) -> dict:
    """The baseline numbers at T, keyed as in the summary (empty without baselines)."""
    if run.baselines is None:
        return {}
    return {
        "baseline_pearson_cb": run.baseline_pearson(label),
        "baseline_t_pred": run.baseline_t_pred(label, "thermal_energy"),
        "baseline_t_pred_inherent": run.baseline_t_pred(label, "inherent_energy"),
    }


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(mean, *spreads, digits: int = 3) -> str:
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f}"
    for s in spreads:
        if s is not None:
            text += f" ± {s:.{digits}f}"
    return text


def _baseline_cells(entry: dict) -> list[str]:
    """Ridge ρ, T_pred from U/N and from e_IS/N (mean ± std over configurations) of one
    temperature entry of the summary; '–' where absent."""
    cells = []
    for key in ("baseline_pearson_cb", "baseline_t_pred", "baseline_t_pred_inherent"):
        v = entry.get(key)
        cells.append("–" if v is None else _fmt(v["mean"], v["std_configurations"]))
    return cells


def _baseline_markdown(summary: dict) -> list[str]:
    """The baselines section of summary.md: what was fitted, then its numbers per T."""
    b = summary.get("baselines")
    if not b:
        return []
    cb, tp = b["cb"], b["t_pred"]
    lines = [
        "## Baselines (same split as the network)",
        "",
        f"- C_B: {cb['model']}; {len(cb['features'])} per-particle features (e_IS per particle, "
        f"coordination numbers by neighbour species within r < {cb['radii']} σ_AA in IS and TS, "
        f"own species), standardised on the training split; fitted on the `{cb['fit_split']}` "
        f"split of T = {', '.join(cb['fit_temperatures'])} ({cb['n_fit_configurations']} "
        f"configurations); ridge penalty λ = {cb['penalty']:g} chosen on the "
        f"`{cb['validation_split']}` split from {', '.join(f'{x:g}' for x in cb['penalty_grid'])}.",
    ]
    for key, name in (("thermal_energy", "U/N"), ("inherent_energy", "e_IS/N")):
        fit = tp[key]
        coef = ", ".join(_fmt(c, digits=4) for c in fit["coefficients"])
        lines.append(
            f"- T from {name}: polynomial of degree {fit['degree']} (coefficients {coef}, "
            f"ascending powers), least squares on the `{fit['fit_split']}` split "
            f"({fit['n_fit_configurations']} configurations)."
        )
    lines += [
        "",
        "| T | ρ ridge | T_pred U/N (RMSE) | T_pred e_IS/N (RMSE) |",
        "|---|---|---|---|",
    ]
    for t in summary["temperatures"]:
        label = t["label"]
        rho = cb["per_temperature"].get(label)
        cells = ["–" if rho is None else _fmt(rho["mean"], rho["std_configurations"])]
        for key in ("thermal_energy", "inherent_energy"):
            v = tp[key]["per_temperature"].get(label)
            cells.append(
                "–"
                if v is None
                else f"{_fmt(v['mean'], v['std_configurations'])} ({_fmt(v['rmse'])})"
            )
        lines.append(f"| {label}{'' if t['trained'] else '*'} | " + " | ".join(cells) + " |")
    return lines + [""]


def _ensemble_markdown(group: dict, temps: dict) -> list[str]:
    """The seed-ensemble section of summary.md for one group: the ensemble (the mean of its
    seeds' predictions), its worst configuration beside the ridge baseline, and every seed."""
    rows = [(label, v) for label, v in group["per_temperature"].items() if "ensemble" in v]
    if not rows:
        return []
    seeds = [str(s) for s in group["seeds"]]
    lines = [
        f"### Seed ensemble of seeds {group['seeds']} (the mean of their predictions), each seed",
        "",
        "ρ and T_pred of the ensemble ± the spread over configurations; the worst test "
        "configuration (index) with the ridge baseline's ρ on the same configuration; T_pred ± "
        "the members' spread; then each seed's mean over configurations.",
        "",
        "| T | ρ node ensemble | worst configuration: ensemble / ridge | ridge worst "
        "| T_pred ensemble (± members) | T_pred/T_MD | "
        + " | ".join(f"ρ / T_pred s{s}" for s in seeds)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(seeds),
    ]
    for label, v in rows:
        e = v["ensemble"]
        w = e["worst_configuration"]
        bw = e.get("baseline_worst_configuration")
        base_worst = "–" if bw is None else f"#{bw['index']}: {_fmt(bw['pearson_node'])}"
        per_seed = []
        for s in seeds:
            rho = v["pearson_node"]["per_seed"].get(s)
            tp = v["t_pred"]["per_seed"].get(s)
            per_seed.append(
                "–" if rho is None else f"{_fmt(rho['mean'])} / {_fmt(tp and tp['mean'])}"
            )
        lines.append(
            f"| {label}{'' if temps[label]['trained'] else '*'} | "
            f"{_fmt(e['pearson_node']['mean'], e['pearson_node']['std_configurations'])} | "
            f"#{w['index']}: {_fmt(w['pearson_node'])} / {_fmt(w.get('baseline_pearson_node'))} | "
            f"{base_worst} | "
            f"{_fmt(e['t_pred']['mean'], e['t_pred']['std_members'])} | "
            f"{_fmt(e['t_pred_ratio'])} | " + " | ".join(per_seed) + " |"
        )
    return lines + [""]


def summary_markdown(summary: dict) -> str:
    """The headline numbers of :func:`summarise` as markdown tables."""
    lines = [f"# T-BOTAN analysis of `{summary['run_dir']}` ({summary['split']} split)", ""]
    temps = {t["label"]: t for t in summary["temperatures"]}
    main = summary["main_group"]
    groups = summary["groups"]
    lines += [
        "Values are means over configurations and seeds; ± gives the standard deviation over "
        "seeds, then over configurations (population standard deviations).  "
        "Untrained temperatures are marked *.",
        "",
    ]
    if main in groups:
        g = groups[main]
        lines += [
            f"## Main model `{main}` (seeds {g['seeds']})",
            "",
            "| T | trained | C | ρ node (C_B, A) | ρ edge | T_pred | T_pred/T_MD "
            "| ρ ridge baseline | T_pred fit U/N | T_pred fit e_IS/N |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, v in g["per_temperature"].items():
            t = temps[label]
            pn, pe, tp, tr = v["pearson_node"], v["pearson_edge"], v["t_pred"], v["t_pred_ratio"]
            lines.append(
                f"| {label}{'' if t['trained'] else '*'} | {'yes' if t['trained'] else 'no'} | "
                f"{t['n_configurations']} | "
                f"{_fmt(pn['mean'], pn['std_seeds'], pn['std_configurations'])} | "
                f"{_fmt(pe['mean'], pe['std_seeds'], pe['std_configurations'])} | "
                f"{_fmt(tp['mean'], tp['std_seeds'], tp['std_configurations'])} | "
                f"{_fmt(tr['mean'], tr['std_configurations'])} | "
                + " | ".join(_baseline_cells(t))
                + " |"
            )
        lines.append("")
        lines += _ensemble_markdown(g, temps)
    else:
        lines += [f"No predictions of the main model `{main}`.", ""]
    dist = summary["embedding_distance"].get(main)
    if dist is not None:
        labels = dist["labels"]
        lines += [
            f"## Embedding distances D(T_i, T_j) (Eq. 12), `{main}`, averaged over seeds "
            f"{dist['seeds']}",
            "",
            "| T | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for label, row in zip(labels, dist["D"], strict=True):
            lines.append(f"| {label} | " + " | ".join(_fmt(x) for x in row) + " |")
        lines.append("")
    others = [name for name in groups if name != main]
    if others:
        lines += [
            "## Other models (λ_g sweep, input-variant ablations): ρ node and T_pred",
            "",
            "| model | seeds | " + " | ".join(temps) + " |",
            "|---|---|" + "---|" * len(temps),
        ]
        for name in [main] + others if main in groups else others:
            g = groups[name]
            cells = []
            for label in temps:
                v = g["per_temperature"].get(label)
                cells.append(
                    "–"
                    if v is None
                    else f"{_fmt(v['pearson_node']['mean'])} / {_fmt(v['t_pred']['mean'])}"
                )
            lines.append(f"| `{name}` | {g['seeds']} | " + " | ".join(cells) + " |")
        by_label = {t["label"]: t for t in summary["temperatures"]}
        if any("baseline_pearson_cb" in t for t in by_label.values()):
            cells = []
            for label in temps:
                rho = by_label[label].get("baseline_pearson_cb")
                tp = by_label[label].get("baseline_t_pred")
                cells.append(
                    f"{_fmt(rho and rho['mean'])} / {_fmt(tp and tp['mean'])}" if rho or tp else "–"
                )
            lines.append("| ridge baseline / T(U/N) fit | – | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _baseline_markdown(summary)
    if summary["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    return "\n".join(lines)
