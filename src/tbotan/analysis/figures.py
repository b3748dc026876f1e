"""The paper's figures, one function per figure, from a :class:`tbotan.analysis.runs.RunAnalysis`.

Every ``figNN_<name>(run)`` returns a :class:`matplotlib.figure.Figure` (no pyplot, no global
state: figures render with the Agg canvas) or raises :class:`FigureSkipped` naming the
missing input (no ablation trained, a single λ_g, no metrics ...): nothing is faked.
:data:`FIGURES` lists them in the paper's order; :func:`report` draws all of them and writes
``summary.json`` and ``summary.md`` beside the figures.

Each figure selects its data here and draws them with the panels of
:mod:`tbotan.analysis.plot` (functions of an ``ax`` and arrays), under its one style
(:data:`~tbotan.analysis.plot.STYLE`): serif 8 pt text, inward ticks on all sides,
single-column (3.4 in) or two-column (7 in) widths.  MD is black throughout; trained
temperatures are filled symbols (black in T_pred plots), untrained ones open symbols (red):
the one marker rule of :mod:`tbotan.analysis.plot`.

Paper figures and functions:

====  =============================  ==================================================
Fig.  function                       content
====  =============================  ==================================================
2     :func:`fig02_cb_maps`          C_B maps in the slab, MD beside prediction (low T)
3     :func:`fig03_sb`               S_B(q), MD vs prediction (low T)
4     :func:`fig04_t_pred`           T_pred vs T_MD
5     :func:`fig05_embedding_distance`  D(T_i, T_j) heat map (Eq. 12)
6     :func:`fig06_loss`             training (and validation) losses vs epoch
7     :func:`fig07_pearson`          Pearson ρ vs T, node and edge
8     :func:`fig08_cb_maps_high_t`   C_B maps, high T
9     :func:`fig09_sb_high_t`        S_B(q), high T
10    :func:`fig10_t_pred_distribution`  P(T_pred/T_MD) (Eq. B1)
11    :func:`fig11_sb_lambda`        S_B(q) for each λ_g
12    :func:`fig12_t_pred_lambda`    T_pred vs T_MD for each λ_g
13    :func:`fig13_cb_maps_ablation` C_B maps, IS+TS / IS / TS inputs
14    :func:`fig14_sb_ablation`      S_B(q), IS+TS / IS / TS
15    :func:`fig15_t_pred_ablation`  T_pred vs T_MD, IS+TS / IS / TS
====  =============================  ==================================================

The paper splits the temperatures between the main text (T ≤ 0.56, Figs. 2–3) and the
appendix (T = 0.64, 0.80, Figs. 8–9); here the main-text set is every temperature up to the
highest untrained one (all temperatures when none is untrained), which is that split for the
paper's configuration.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from tbotan.analysis.plot import (
    BASELINE_CB_TEXT,
    BASELINE_COLOR,
    BASELINE_MARKER,
    BASELINE_T_TEXT,
    DOUBLE_COLUMN,
    ENSEMBLE_COLOR,
    ENSEMBLE_MARKER,
    ENSEMBLE_TEXT,
    MAP_CMAP,
    MAP_PERCENTILES,
    Q_LABEL,
    SAVE_DPI,
    SB_LABEL,
    SERIES_COLORS,
    SERIES_MARKERS,
    SINGLE_COLUMN,
    STYLE,
    T_LABEL,
    TRAINED_COLOR,
    UNTRAINED_COLOR,
    VARIANT_STYLE,
    cb_map_panel,
    diagonal_axes,
    letter,
    log_ticks,
    matrix_panel,
    mean_band,
    panel_grid,
    point,
    sb_panel,
    temperature_colors,
    temperature_text_color,
    temperature_ticks,
    trained_untrained_handles,
)
from tbotan.analysis.runs import RunAnalysis
from tbotan.analysis.summary import summarise, summary_markdown
from tbotan.config import temperature_labels
from tbotan.formats.io_utils import atomic_path, write_text
from tbotan.names import Group, validation_column, validation_temperatures


class FigureSkipped(Exception):
    """A figure cannot be drawn because its inputs are absent; the message says which."""


def _styled(func: Callable[[RunAnalysis], Figure]) -> Callable[[RunAnalysis], Figure]:
    """Draw ``func`` under :data:`STYLE` (rcParams are read when artists are created)."""

    @functools.wraps(func)
    def wrapper(run: RunAnalysis) -> Figure:
        with matplotlib.rc_context(STYLE):
            return func(run)

    return wrapper


def save(fig: Figure, stem: str | os.PathLike, formats: list[str]) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format (atomically); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp, matplotlib.rc_context(STYLE):
            fig.savefig(tmp, format=fmt, dpi=SAVE_DPI, bbox_inches="tight", pad_inches=0.02)
        paths.append(path)
    return paths


# ============================================================================ helpers


def _main_labels(run: RunAnalysis) -> list[str]:
    """Temperatures of the main-text figures: up to the highest untrained one."""
    untrained = [t.T for t in run.temperatures if not t.trained]
    top = max(untrained) if untrained else math.inf
    return [t.label for t in run.temperatures if t.T <= top]


def _appendix_labels(run: RunAnalysis) -> list[str]:
    main = set(_main_labels(run))
    return [t.label for t in run.temperatures if t.label not in main]


def _with_predictions(run: RunAnalysis, group: Group, labels: list[str]) -> list[str]:
    return [label for label in labels if run.pearson(group, label, "node") is not None]


def _main_model_at(run: RunAnalysis, labels: list[str], which: str) -> tuple[Group, list[str]]:
    """The main model and those of ``labels`` (described by ``which``) it has predictions at;
    FigureSkipped when there are none."""
    group = _require_main(run)
    if not labels:
        raise FigureSkipped(f"no {which}")
    found = _with_predictions(run, group, labels)
    if not found:
        raise FigureSkipped(f"the main model has no predictions at the {which}")
    return group, found


def _require_main(run: RunAnalysis) -> Group:
    group = run.main_group
    if not run.seeds(group):
        raise FigureSkipped(f"no predictions of the main model {group.name}_s*")
    return group


def _variant_groups(run: RunAnalysis) -> list[Group]:
    """Input variants at the main λ_g, IS+TS first."""
    main = run.main_group
    found = {g.variant: g for g in run.groups() if Group(main.variant, g.lambda_global) == main}
    return [found[v] for v in VARIANT_STYLE if v in found]


def _lambda_groups(run: RunAnalysis) -> list[Group]:
    """λ_g values of the main variant, ascending."""
    main = run.main_group
    return sorted(
        (g for g in run.groups() if g.variant == main.variant), key=lambda g: g.lambda_global
    )


def _lambda_series(run: RunAnalysis) -> list[tuple[Group, str, str, str]]:
    """(group, legend text, colour, marker) for each λ_g of the main variant (at least two)."""
    groups = _lambda_groups(run)
    if len(groups) < 2:
        raise FigureSkipped("needs predictions of at least two λ_g values of the main variant")
    return [
        (
            g,
            _lambda_text(g.lambda_global) + _seeds_text(run, g),
            SERIES_COLORS[i % len(SERIES_COLORS)],
            SERIES_MARKERS[i % len(SERIES_MARKERS)],
        )
        for i, g in enumerate(groups)
    ]


def _variant_series(run: RunAnalysis) -> list[tuple[Group, str, str, str]]:
    """(group, legend text, colour, marker) for each input variant at the main λ_g."""
    groups = _variant_groups(run)
    if len(groups) < 2:
        raise FigureSkipped("needs predictions of at least two input variants at the main λ_g")
    return [
        (g, VARIANT_STYLE[g.variant][2] + _seeds_text(run, g), *VARIANT_STYLE[g.variant][:2])
        for g in groups
    ]


def _lambda_text(lg: float) -> str:
    if lg > 0:
        k = math.log10(lg)
        if abs(k - round(k)) < 1e-9:
            return rf"$\lambda_g = 10^{{{int(round(k))}}}$"
    return rf"$\lambda_g = {lg:g}$"


def _seeds_text(run: RunAnalysis, group: Group) -> str:
    n = len(run.seeds(group))
    return f" ({n} seeds)" if n > 1 else ""


def _t_title(run: RunAnalysis, label: str) -> str:
    """Panel title of a temperature; untrained ones say so on a second line (drawn red)."""
    return f"$T = {label}$" + ("" if run.trained(label) else "\n(untrained)")


def _cb_symbol(run: RunAnalysis, label: str) -> str:
    t = run.temperature(label)
    ratio = t.label_time / t.tau_alpha
    when = r"\tau_\alpha" if abs(ratio - 1) < 1e-6 else rf"{ratio:g}\,\tau_\alpha"
    return rf"$C_B(t = {when})$"


def _t_colors(run: RunAnalysis) -> dict[str, tuple]:
    """{label: colour} of the run's temperatures (:func:`.plot.temperature_colors`)."""
    colors = temperature_colors(len(run.temperatures))
    return {t.label: c for t, c in zip(run.temperatures, colors, strict=True)}


# ============================================================================ C_B maps


def _maps(run: RunAnalysis, labels: list[str], groups: list[Group]) -> Figure:
    """Rows: MD, then one row per model group (its first seed with predictions at every T of
    ``labels``); columns: temperatures."""
    rows: list = [("MD", None)]
    for g in groups:
        complete = [m for m in run.seeds(g) if all((m.name, t) in run.results for t in labels)]
        if not complete:
            raise FigureSkipped(f"no seed of {g.name} has predictions at every T of {labels}")
        rows.append((g, complete[0]))
    n_rows, n_cols = len(rows), len(labels)
    panel = min(1.65, (DOUBLE_COLUMN - 0.6) / n_cols)
    height = 0.6 + panel * (n_rows + 0.45)
    fig = Figure(figsize=(0.6 + panel * n_cols, height))
    # a spacer row keeps the colour bars clear of the x tick labels and x label
    gs = fig.add_gridspec(
        n_rows + 2,
        n_cols,
        height_ratios=[1] * n_rows + [0.02, 0.06],
        hspace=0.22,
        wspace=0.1,
        top=1 - 0.45 / height,
        bottom=0.05,
    )
    cmap = matplotlib.colormaps[MAP_CMAP]
    for j, label in enumerate(labels):
        t = run.temperature(label)
        values = [t.slab_cb]
        for _, m in rows[1:]:
            values.append(run.results[(m.name, label)].slab_cb)
        # one colour scale per temperature for MD and every prediction: the 1st-99th
        # percentiles of all their values, so that one outlier does not wash out the maps
        allv = np.concatenate(values)
        lo, hi = np.percentile(allv, MAP_PERCENTILES) if allv.size else (0.0, 1.0)
        norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
        extend = {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
            (bool(allv.min() < lo), bool(allv.max() > hi)), "both"
        )
        for i, ((g, _), v) in enumerate(zip(rows, values, strict=True)):
            ax = fig.add_subplot(gs[i, j])
            discs = cb_map_panel(ax, t.slab_xy, t.slab_types, v, t.box_length, norm, cmap)
            letter = f"({chr(ord('a') + i * n_cols + j)})"
            ax.set_title(
                f"{letter} {_t_title(run, label)}" if i == 0 else letter,
                loc="left",
                color=temperature_text_color(t.trained or i > 0),
            )
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(MaxNLocator(4, integer=True, prune="upper"))
            if j == 0:
                name = "MD" if g == "MD" else f"T-BOTAN {VARIANT_STYLE[g.variant][2]}"
                ax.set_ylabel(name + "\n" + r"$y\ [\sigma_{AA}]$")
            else:
                ax.tick_params(labelleft=False)
            if i == n_rows - 1:
                ax.set_xlabel(r"$x\ [\sigma_{AA}]$")
            else:
                ax.tick_params(labelbottom=False)
        cax = fig.add_subplot(gs[n_rows + 1, j])
        cbar = fig.colorbar(discs, cax=cax, orientation="horizontal", extend=extend)
        cbar.set_label(_cb_symbol(run, label))
        cbar.ax.tick_params(labelsize=6, top=False)
        cbar.locator = matplotlib.ticker.MaxNLocator(4)
        cbar.update_ticks()
    t0 = run.temperature(labels[0])
    seeds = ", ".join(f"{VARIANT_STYLE[g.variant][2]} seed {m.seed}" for g, m in rows[1:])
    fig.suptitle(
        rf"slab ${t0.slab[0]:.2f} < z < {t0.slab[1]:.2f}$ ($L = {t0.box_length:.2f}$), "
        f"first test configuration; {seeds}",
        fontsize=7,
        y=0.99,
    )
    return fig


@_styled
def fig02_cb_maps(run: RunAnalysis) -> Figure:
    """Fig. 2: C_B in the slab, MD (top) beside the main model (bottom), main-text T."""
    group, labels = _main_model_at(run, _main_labels(run), "main-text temperatures")
    return _maps(run, labels, [group])


@_styled
def fig08_cb_maps_high_t(run: RunAnalysis) -> Figure:
    """Fig. 8: as Fig. 2 at the temperatures above the highest untrained one."""
    group, labels = _main_model_at(
        run, _appendix_labels(run), "temperatures above the highest untrained one"
    )
    return _maps(run, labels, [group])


@_styled
def fig13_cb_maps_ablation(run: RunAnalysis) -> Figure:
    """Fig. 13: C_B maps from MD and from the IS+TS, IS and TS input variants."""
    groups = _variant_groups(run)
    if len(groups) < 2:
        raise FigureSkipped("needs predictions of at least two input variants at the main λ_g")
    labels = [
        label
        for label in _main_labels(run)
        if all(run.seeds(g) and run.pearson(g, label, "node") for g in groups)
    ]
    if not labels:
        raise FigureSkipped("no temperature has predictions of every input variant")
    return _maps(run, labels, groups)


# ============================================================================ S_B(q)


def _sb_figure(
    run: RunAnalysis, labels: list[str], series: list[tuple[Group, str, str, str]]
) -> Figure:
    """Panels of S_B(q) per temperature: MD (open black circles) and each series
    (group, legend text, colour, marker): mean over seeds, band ± std over seeds."""
    n_rows, n_cols = panel_grid(len(labels), max_cols=3 if len(labels) in (5, 6) else 4)
    width = min(DOUBLE_COLUMN, 0.5 + 1.75 * n_cols)
    fig = Figure(figsize=(width, 0.7 + 1.9 * n_rows))
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(labels):
            ax.set_visible(False)
            continue
        label = labels[k]
        t = run.temperature(label)
        predictions = [
            (*pred, color, marker, text)
            for group, text, color, marker in series
            if (pred := run.sb_prediction(group, label)) is not None
        ]
        sb_panel(ax, t.sb.q, t.sb.mean, predictions)
        ax.set_title(
            f"({chr(ord('a') + k)}) " + _t_title(run, label),
            loc="left",
            color=temperature_text_color(t.trained),
        )
        if k % n_cols == 0:
            ax.set_ylabel(SB_LABEL)
        if k // n_cols == n_rows - 1 or k + n_cols >= len(labels):
            ax.set_xlabel(Q_LABEL)
            ax.tick_params(labelbottom=True)
    handles, texts = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        texts,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=len(texts),
        handlelength=2.2,
    )
    log_ticks(axes.flat[0], "x")
    log_ticks(axes.flat[0], "y")
    two_lines = any(not run.trained(label) for label in labels[:n_cols])
    height = fig.get_figheight()
    fig.subplots_adjust(wspace=0.06, hspace=0.3, top=1 - (0.42 if two_lines else 0.28) / height)
    return fig


def _main_series(run: RunAnalysis) -> list[tuple[Group, str, str, str]]:
    group = run.main_group
    n = len(run.seeds(group))
    text = f"T-BOTAN, mean ± std of {n} seeds" if n > 1 else "T-BOTAN"
    return [(group, text, "tab:blue", "s")]


@_styled
def fig03_sb(run: RunAnalysis) -> Figure:
    """Fig. 3: S_B(q, τα) of MD and of the main model's C_B, main-text temperatures."""
    _, labels = _main_model_at(run, _main_labels(run), "main-text temperatures")
    return _sb_figure(run, labels, _main_series(run))


@_styled
def fig09_sb_high_t(run: RunAnalysis) -> Figure:
    """Fig. 9: as Fig. 3 at the temperatures above the highest untrained one."""
    _, labels = _main_model_at(
        run, _appendix_labels(run), "temperatures above the highest untrained one"
    )
    return _sb_figure(run, labels, _main_series(run))


@_styled
def fig11_sb_lambda(run: RunAnalysis) -> Figure:
    """Fig. 11: S_B(q) for each λ_g of the main input variant, all temperatures."""
    series = _lambda_series(run)
    labels = [
        t.label
        for t in run.temperatures
        if any(run.pearson(g, t.label, "node") for g, *_ in series)
    ]
    return _sb_figure(run, labels, series)


@_styled
def fig14_sb_ablation(run: RunAnalysis) -> Figure:
    """Fig. 14: S_B(q) from the IS+TS, IS and TS input variants, main-text temperatures."""
    series = _variant_series(run)
    labels = [
        label
        for label in _main_labels(run)
        if any(run.pearson(g, label, "node") for g, *_ in series)
    ]
    return _sb_figure(run, labels, series)


# ============================================================================ T_pred


def _t_pred_series(
    run: RunAnalysis, ax, group: Group, color, marker, label, dx: float = 0.0
) -> bool:
    """Mean T_pred ± std over configurations per T (drawn at T + ``dx``); filled trained,
    open untrained."""
    drawn = False
    for t in run.temperatures:
        s = run.t_pred(group, t.label)
        if s is None:
            continue
        c = color(t) if callable(color) else color
        point(
            ax,
            t.T + dx,
            s.mean,
            s.std_configurations,
            c,
            marker,
            t.trained,
            label=label if not drawn else None,
        )
        drawn = True
    return drawn


#: (feature, colour, marker, line style, legend text) of the energy-fit T baselines.
BASELINE_T_SERIES = (
    ("thermal_energy", BASELINE_COLOR, BASELINE_MARKER, "-.", BASELINE_T_TEXT),
    ("inherent_energy", "tab:olive", "v", ":", r"energy-fit baseline, $T(e_{IS}/N)$"),
)


def _baseline_t_pred_series(run: RunAnalysis, ax) -> list[Line2D]:
    """The energy-fit T baselines (mean ± std over configurations per T, drawn just right of
    T_MD so as not to hide the network's symbols); their legend handles."""
    temps = [t.T for t in run.temperatures]
    dx = 0.02 * ((max(temps) - min(temps)) or 1.0)
    handles = []
    for k, (feature, color, marker, ls, text) in enumerate(BASELINE_T_SERIES, start=1):
        points = [(t, run.baseline_t_pred(t.label, feature)) for t in run.temperatures]
        points = [(t, b) for t, b in points if b is not None and b["mean"] is not None]
        if not points:
            continue
        for t, b in points:
            point(
                ax,
                t.T + k * dx,
                b["mean"],
                b["std_configurations"] or 0.0,
                color,
                marker,
                t.trained,
                ms=3.5,
                mew=0.8,
                elinewidth=0.7,
            )
        ax.plot(
            [t.T + k * dx for t, _ in points],
            [b["mean"] for _, b in points],
            ls,
            color=color,
            lw=0.8,
            zorder=0,
        )
        handles.append(Line2D([], [], ls=ls, marker=marker, color=color, ms=3.5, label=text))
    return handles


@_styled
def fig04_t_pred(run: RunAnalysis) -> Figure:
    """Fig. 4: T_pred vs T_MD, mean over configurations and seeds, error bars the standard
    deviation over configurations; trained black (filled), untrained red (open).  Beside
    them the energy-fit baselines T(U/N) and T(e_IS/N) of :mod:`tbotan.learning.baselines`."""
    group = _require_main(run)
    fig = Figure(figsize=(SINGLE_COLUMN, SINGLE_COLUMN * 0.92))
    ax = fig.add_subplot()
    _t_pred_series(run, ax, group, lambda t: temperature_text_color(t.trained), "o", None)
    handles = [
        *trained_untrained_handles(TRAINED_COLOR, UNTRAINED_COLOR),
        Line2D(
            [], [], ls="--", color="0.4", lw=0.8, label=r"$T_{\mathrm{pred}} = T_{\mathrm{MD}}$"
        ),
    ]
    baselines = _baseline_t_pred_series(run, ax)
    ax.legend(handles=handles + baselines, loc="upper left", fontsize=6 if baselines else None)
    diagonal_axes(ax)
    return fig


def _t_pred_groups(run: RunAnalysis, series: list[tuple[Group, str, str, str]]) -> Figure:
    """T_pred vs T_MD of each series (group, legend text, colour, marker), side by side."""
    fig = Figure(figsize=(SINGLE_COLUMN, SINGLE_COLUMN * 0.92))
    ax = fig.add_subplot()
    handles = []
    temps = [t.T for t in run.temperatures]
    # side-by-side symbols rather than on top of each other, well within the T spacing
    gaps = np.diff(sorted(temps))
    step = min(0.025 * ((max(temps) - min(temps)) or 1.0), 0.15 * (gaps.min() if gaps.size else 1))
    for i, (g, text, color, marker) in enumerate(series):
        dx = (i - (len(series) - 1) / 2) * step
        if _t_pred_series(run, ax, g, color, marker, None, dx=dx):
            handles.append(Line2D([], [], ls="", marker=marker, color=color, ms=5, label=text))
    handles += trained_untrained_handles()
    offset = step * (len(series) - 1) / 2
    handles.append(
        Line2D([], [], ls="", label=rf"(offset $\pm${offset:.2g} in $T_{{\mathrm{{MD}}}}$)")
    )
    ax.legend(handles=handles, loc="upper left")
    diagonal_axes(ax)
    return fig


@_styled
def fig12_t_pred_lambda(run: RunAnalysis) -> Figure:
    """Fig. 12: T_pred vs T_MD for each λ_g of the main variant."""
    return _t_pred_groups(run, _lambda_series(run))


@_styled
def fig15_t_pred_ablation(run: RunAnalysis) -> Figure:
    """Fig. 15: T_pred vs T_MD from the IS+TS, IS and TS input variants."""
    return _t_pred_groups(run, _variant_series(run))


@_styled
def fig10_t_pred_distribution(run: RunAnalysis) -> Figure:
    """Fig. 10: P(T_pred/T_MD) per T, pooled over configurations and seeds, ∫ P = 1 (Eq. B1);
    solid trained, dashed untrained."""
    group = _require_main(run)
    fig = Figure(figsize=(SINGLE_COLUMN, SINGLE_COLUMN * 0.75))
    ax = fig.add_subplot()
    colors = _t_colors(run)
    for t in run.temperatures:
        dist = run.t_pred_distribution(group, t.label)
        if dist is None:
            continue
        color = colors[t.label]
        ax.stairs(
            dist["density"],
            dist["edges"],
            color=color,
            lw=1.1,
            ls="-" if t.trained else "--",
            label=f"$T = {t.label}$" + ("" if t.trained else " (untrained)"),
        )
    ax.axvline(1.0, color="0.4", ls=":", lw=0.8)
    ax.set_xlabel(r"$T_{\mathrm{pred}}/T_{\mathrm{MD}}$")
    ax.set_ylabel(r"$P(T_{\mathrm{pred}}/T_{\mathrm{MD}})$")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=6)
    return fig


@_styled
def fig16_t_pred_distribution_per_seed(run: RunAnalysis) -> Figure:
    """P(T_pred/T_MD) per T as Fig. 10, one panel per seed of the main model (ours: how much a
    single training's temperature readout moves from seed to seed); skipped for one seed."""
    group = _require_main(run)
    seeds = run.seeds(group)
    if len(seeds) < 2:
        raise FigureSkipped("needs predictions of at least two seeds of the main model")
    fig = Figure(figsize=(SINGLE_COLUMN * 0.62 * len(seeds), SINGLE_COLUMN * 0.75))
    axes = fig.subplots(1, len(seeds), sharex=True, sharey=True, squeeze=False)[0]
    colors = _t_colors(run)
    for ax, model in zip(axes, seeds, strict=True):
        for t in run.temperatures:
            dist = run.t_pred_distribution(group, t.label, model.seed)
            if dist is None:
                continue
            ax.stairs(
                dist["density"],
                dist["edges"],
                color=colors[t.label],
                lw=1.1,
                ls="-" if t.trained else "--",
                label=f"$T = {t.label}$" + ("" if t.trained else " (untrained)"),
            )
        ax.axvline(1.0, color="0.4", ls=":", lw=0.8)
        ax.set_title(f"seed {model.seed}", fontsize=7)
        ax.set_xlabel(r"$T_{\mathrm{pred}}/T_{\mathrm{MD}}$")
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel(r"$P(T_{\mathrm{pred}}/T_{\mathrm{MD}})$")
    axes[0].legend(loc="upper left", fontsize=5)
    return fig


# ============================================================================ embeddings


@_styled
def fig05_embedding_distance(run: RunAnalysis) -> Figure:
    """Fig. 5: D(T_i, T_j) between mean global embeddings (Eq. 11–12); with several seeds a
    second panel shows the mean over seeds of the per-seed distances (latent spaces of
    different seeds are not aligned, so Eq. 11 mixes them).  Untrained T in red."""
    group = _require_main(run)
    d = run.embedding_distances(group)
    if d is None:
        raise FigureSkipped("needs embeddings of the main model at two temperatures or more")
    labels, seeds = d["labels"], d["seeds"]
    per_seed = d["per_seed"].mean(axis=0)
    two = len(seeds) > 1
    fig = Figure(figsize=(DOUBLE_COLUMN if two else SINGLE_COLUMN, 2.9))
    axes = fig.subplots(1, 2 if two else 1, squeeze=False)[0]
    vmax = float(max(d["D"].max(), per_seed.max() if two else 0.0)) or 1.0
    trained = [run.trained(label) for label in labels]
    matrix_panel(
        fig,
        axes[0],
        d["D"],
        labels,
        trained,
        f"(a) Eq. (12), embeddings averaged over {len(seeds)} seed{'s' if two else ''}",
        vmax,
        r"$D(T_i, T_j)$",
    )
    if two:
        matrix_panel(
            fig,
            axes[1],
            per_seed,
            labels,
            trained,
            r"(b) per-seed $D_s$, averaged over seeds",
            vmax,
            r"$\langle D_s(T_i, T_j) \rangle_s$",
        )
    fig.text(0.5, -0.04, "untrained temperatures in red", ha="center", fontsize=6, color="0.3")
    fig.subplots_adjust(wspace=0.45)
    return fig


# ============================================================================ Pearson


def _baseline_pearson_series(run: RunAnalysis, ax) -> bool:
    """The ridge C_B baseline's node ρ vs T (dashed, ± std over configurations); filled
    trained, open untrained.  False when the run has no baselines."""
    points = [(t, run.baseline_pearson(t.label)) for t in run.temperatures]
    points = [(t, b) for t, b in points if b is not None and b["mean"] is not None]
    for t, b in points:
        point(
            ax,
            t.T,
            b["mean"],
            b["std_configurations"] or 0.0,
            BASELINE_COLOR,
            BASELINE_MARKER,
            t.trained,
            ms=4,
        )
    if points:
        ax.plot(
            [t.T for t, _ in points],
            [b["mean"] for _, b in points],
            "--",
            color=BASELINE_COLOR,
            lw=0.8,
            zorder=0,
        )
    return bool(points)


@_styled
def fig07_pearson(run: RunAnalysis) -> Figure:
    """Fig. 7: Pearson ρ of node (C_B, A particles) and edge outputs vs T, means over seeds;
    filled trained, open untrained; error bars the standard deviation over configurations.
    With several seeds also the node ρ of the seed ensemble (their mean prediction, diamonds).
    Dashed: the ridge baseline on local structure (:mod:`tbotan.learning.baselines`), same
    split, same ρ."""
    group = _require_main(run)
    fig = Figure(figsize=(SINGLE_COLUMN, SINGLE_COLUMN * 0.75))
    ax = fig.add_subplot()
    kinds = (
        ("node", "tab:blue", "o", r"node, $C_B^j$ (A)"),
        ("edge", "tab:orange", "s", r"edge, $E_{jk}$"),
    )
    for kind, color, marker, _ in kinds:
        xs, ys = [], []
        for t in run.temperatures:
            s = run.pearson(group, t.label, kind)
            if s is None:
                continue
            point(ax, t.T, s.mean, s.std_configurations, color, marker, t.trained)
            xs.append(t.T)
            ys.append(s.mean)
        ax.plot(xs, ys, "-", color=color, lw=0.6, alpha=0.6, zorder=0)
    handles = [
        Line2D([], [], ls="", marker=m, color=c, ms=5, label=text) for _, c, m, text in kinds
    ]
    if len(run.seeds(group)) > 1:
        # the seed ensemble: ρ of the seeds' mean prediction (docs/physics.md §8.5)
        xs, ys = [], []
        for t in run.temperatures:
            e = run.ensemble(group, t.label)
            if e is None:
                continue
            point(
                ax,
                t.T,
                e.pearson_node.mean(),
                e.pearson_node.std(),
                ENSEMBLE_COLOR,
                ENSEMBLE_MARKER,
                t.trained,
            )
            xs.append(t.T)
            ys.append(e.pearson_node.mean())
        ax.plot(xs, ys, "-", color=ENSEMBLE_COLOR, lw=0.6, alpha=0.6, zorder=0)
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker=ENSEMBLE_MARKER,
                color=ENSEMBLE_COLOR,
                ms=4,
                label=ENSEMBLE_TEXT,
            )
        )
    if _baseline_pearson_series(run, ax):
        handles.append(
            Line2D(
                [],
                [],
                ls="--",
                marker=BASELINE_MARKER,
                color=BASELINE_COLOR,
                ms=4,
                label=BASELINE_CB_TEXT,
            )
        )
    handles += trained_untrained_handles()
    ax.legend(handles=handles, loc="best", ncols=2)
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel(r"Pearson $\rho$")
    temperature_ticks(ax.xaxis)
    return fig


# ============================================================================ losses

LOSS_PANELS = (
    ("loss", r"$\mathcal{L}_{\mathrm{all}}$"),
    ("loss_mse", r"$\mathcal{L}_{\mathrm{MSE}}$"),
    ("loss_var", r"$\mathcal{L}_{\mathrm{Var}}$"),
    ("loss_corr", r"$\mathcal{L}_{\mathrm{Corr}}$"),
    ("loss_edge", r"$\mathcal{L}_{\mathrm{edge}}$"),
    ("loss_global", r"$\mathcal{L}_{\mathrm{global}}$"),
)


def _seed_average(run: RunAnalysis, models, column: str):
    """(epochs, mean, std) over seeds on the epochs every seed has; None if absent."""
    tables = [run.metrics[m.name] for m in models if column in run.metrics.get(m.name, {})]
    if not tables:
        return None
    epochs = functools.reduce(np.intersect1d, [t["epoch"] for t in tables])
    if epochs.size == 0:
        return None
    values = np.stack([t[column][np.searchsorted(t["epoch"], epochs)] for t in tables])
    return epochs, values.mean(axis=0), values.std(axis=0)


@_styled
def fig06_loss(run: RunAnalysis) -> Figure:
    """Fig. 6: loss terms vs epoch, averaged over the seeds of the main model (band ± std over
    seeds); validation losses at the lowest training temperature when metrics.csv holds them
    (columns ``val_<term>_T<T>``); validation ρ and T_pred per temperature in extra panels.
    The dashed line marks the end of the warm-up (w_v, w_c switched on)."""
    group = _require_main(run)
    models = [m for m in run.seeds(group) if m.name in run.metrics]
    if not models:
        raise FigureSkipped(f"no metrics.csv of the main model {group.name}_s*")
    lowest = temperature_labels(run.config, "train")[0]  # the config has one at least
    columns = set().union(*(run.metrics[m.name] for m in models))
    val_t = validation_temperatures(columns, ("pearson", "t_pred"))
    extra = 2 if val_t else 0
    n_panels = len(LOSS_PANELS) + extra
    n_rows, n_cols = panel_grid(n_panels, max_cols=4 if extra else 3)
    height = 1.75 * n_rows + 0.3
    fig = Figure(figsize=(DOUBLE_COLUMN, height))
    axes = fig.subplots(n_rows, n_cols, sharex=True, squeeze=False)
    warmup = run.config["training"]["warmup_epochs"]
    for k, (column, title) in enumerate(LOSS_PANELS):
        ax = axes.flat[k]
        train = _seed_average(run, models, column)
        val = _seed_average(run, models, validation_column(column, lowest))
        drawn_positive = False
        for series, color, text in (
            (train, "tab:blue", "train"),
            (val, "tab:orange", f"validation, $T = {lowest}$"),
        ):
            if series is None:
                continue
            epochs, mean, std = series
            mean_band(ax, epochs, mean, std if len(models) > 1 else None, color, text)
            drawn_positive |= bool(np.any(mean > 0))
        if drawn_positive:  # losses are positive; zeros (a term not yet computed) are left out
            ax.set_yscale("log")
            log_ticks(ax, "y")
        ax.axvline(warmup, color="0.4", ls="--", lw=0.8)
        ax.set_ylabel(title)
        letter(ax, k)
        if train is None and val is None:
            ax.text(
                0.5,
                0.5,
                f"'{column}' not in metrics.csv",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=6,
                color="0.4",
            )
    handles, texts = axes.flat[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.4", ls="--", lw=0.8))
    texts.append(f"end of warm-up (epoch {warmup})")
    n = len(models)
    texts[0] += f", mean ± std over {n} seeds" if n > 1 else f", seed {models[0].seed}"
    fig.legend(handles, texts, loc="lower center", bbox_to_anchor=(0.5, 0.995), ncols=3)
    if extra:
        colors = _t_colors(run)
        for k, (quantity, title) in enumerate(
            (
                ("pearson", r"validation $\rho$ (node)"),
                ("t_pred", r"validation $T_{\mathrm{pred}}$"),
            )
        ):
            ax = axes.flat[len(LOSS_PANELS) + k]
            for label in val_t:
                series = _seed_average(run, models, validation_column(quantity, label))
                if series is None:
                    continue
                epochs, mean, _ = series
                color = colors.get(label, "0.3")
                ax.plot(epochs, mean, color=color, lw=0.9, label=f"$T = {label}$")
                if quantity == "t_pred":
                    ax.axhline(float(label), color=color, ls=":", lw=0.7)
            ax.axvline(warmup, color="0.4", ls="--", lw=0.8)
            ax.set_ylabel(title)
            letter(ax, len(LOSS_PANELS) + k)
        axes.flat[len(LOSS_PANELS)].legend(loc="lower right", fontsize=6)
    for k, ax in enumerate(axes.flat):
        if k >= n_panels:
            ax.set_visible(False)
        elif k + n_cols >= n_panels:
            ax.set_xlabel("epoch")
            ax.tick_params(labelbottom=True)
    fig.subplots_adjust(wspace=0.5, hspace=0.3, top=1 - 0.3 / height)
    return fig


# ============================================================================ registry, report


#: The figures in the paper's order: file stem → function.
FIGURES: dict[str, Callable[[RunAnalysis], Figure]] = {
    "fig02_cb_maps": fig02_cb_maps,
    "fig03_sb": fig03_sb,
    "fig04_t_pred": fig04_t_pred,
    "fig05_embedding_distance": fig05_embedding_distance,
    "fig06_loss": fig06_loss,
    "fig07_pearson": fig07_pearson,
    "fig08_cb_maps_high_t": fig08_cb_maps_high_t,
    "fig09_sb_high_t": fig09_sb_high_t,
    "fig10_t_pred_distribution": fig10_t_pred_distribution,
    "fig11_sb_lambda": fig11_sb_lambda,
    "fig12_t_pred_lambda": fig12_t_pred_lambda,
    "fig13_cb_maps_ablation": fig13_cb_maps_ablation,
    "fig14_sb_ablation": fig14_sb_ablation,
    "fig15_t_pred_ablation": fig15_t_pred_ablation,
    "fig16_t_pred_distribution_per_seed": fig16_t_pred_distribution_per_seed,
}


@dataclass
class Outcome:
    """What became of one figure: the files written, or why it was skipped."""

    name: str
    files: list[Path] = field(default_factory=list)
    skipped: str | None = None


def draw(
    run: RunAnalysis, out_dir: str | os.PathLike, formats: list[str] | None = None
) -> list[Outcome]:
    """Draw every figure of :data:`FIGURES` into ``out_dir`` (``figNN_name.<fmt>``)."""
    formats = formats or run.config["analysis"]["figure_formats"]
    out_dir = Path(out_dir)
    outcomes = []
    for name, func in FIGURES.items():
        try:
            fig = func(run)
        except FigureSkipped as exc:
            outcomes.append(Outcome(name, skipped=str(exc)))
            continue
        outcomes.append(Outcome(name, files=save(fig, out_dir / name, formats)))
    return outcomes


def report(
    run: RunAnalysis, out_dir: str | os.PathLike, formats: list[str] | None = None
) -> list[Outcome]:
    """Figures into ``out_dir/figures``, then ``summary.json`` and ``summary.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    outcomes = draw(run, out_dir / "figures", formats)
    summary = summarise(run)
    summary["figures"] = {
        o.name: (
            {"status": "skipped", "reason": o.skipped}
            if o.skipped
            else {"status": "written", "files": [str(p.relative_to(out_dir)) for p in o.files]}
        )
        for o in outcomes
    }
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    write_text(out_dir / "summary.md", summary_markdown(summary))
    return outcomes
