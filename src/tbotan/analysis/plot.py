"""Panels of the paper's figures: functions that draw on a Matplotlib ``ax`` from arrays.

As freud's ``plot.py``: nothing here knows a run, a model or a file; :mod:`tbotan.analysis.figures`
selects the data of each figure from a :class:`~tbotan.analysis.runs.RunAnalysis` and lays out
the panels drawn here.  Also here: the one style (:data:`STYLE`), the colours and axis labels,
and the one marker rule of every figure: **a temperature the model was trained on is a filled
symbol, an untrained one an open symbol** (:func:`point`, :func:`trained_untrained_handles`);
temperature titles and tick labels of untrained temperatures are red
(:func:`temperature_text_color`).

Units: temperatures in ε_AA/k_B, lengths in σ_AA, wavenumbers in σ_AA⁻¹.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.collections import EllipseCollection
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from tbotan.physics import kalj

#: Figure widths (inches): one and two columns of a two-column journal page.
SINGLE_COLUMN = 3.4
DOUBLE_COLUMN = 7.0

#: The one style of every figure.
STYLE = {
    "font.family": "serif",
    "mathtext.fontset": "dejavuserif",
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 4,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "errorbar.capsize": 2,
    "pdf.fonttype": 42,
    "image.cmap": "viridis",
}
SAVE_DPI = 300

MD_COLOR = "black"
TRAINED_COLOR = "black"
UNTRAINED_COLOR = "tab:red"
MAP_CMAP = "viridis"
MAP_PERCENTILES = (1, 99)  # colour range of the C_B maps
VARIANT_STYLE = {  # colour, marker, label
    "is+ts": ("tab:blue", "o", "IS+TS"),
    "is": ("tab:green", "s", "IS"),
    "ts": ("tab:purple", "^", "TS"),
}
BASELINE_COLOR = "0.45"  # the structural baselines, grey and dashed
BASELINE_MARKER = "D"
BASELINE_CB_TEXT = "ridge baseline (structure)"
ENSEMBLE_COLOR = "navy"  # a seed ensemble's mean prediction
ENSEMBLE_MARKER = "P"
ENSEMBLE_TEXT = "node, seed ensemble"
BASELINE_T_TEXT = r"energy-fit baseline, $T(U/N)$"
SERIES_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P")

T_LABEL = r"$T_{\mathrm{MD}}\ [\epsilon_{AA}/k_B]$"
T_PRED_LABEL = r"$T_{\mathrm{pred}}\ [\epsilon_{AA}/k_B]$"
Q_LABEL = r"$q\ [\sigma_{AA}^{-1}]$"
SB_LABEL = r"$S_B(q)$"


# ============================================================================ the marker rule


def temperature_colors(n: int) -> list[tuple]:
    """One colour per temperature of ``n`` (ascending), cold (dark blue) to hot (orange),
    evenly spaced by rank so that close temperatures stay distinguishable."""
    cmap = matplotlib.colormaps["plasma"]
    return [cmap(0.85 * k / max(n - 1, 1)) for k in range(n)]


def face_color(color, trained: bool):
    """Marker face: the symbol's colour when trained on (filled), white when not (open)."""
    return color if trained else "white"


def temperature_text_color(trained: bool) -> str:
    """Colour of a temperature's title or tick label: black trained, red untrained."""
    return TRAINED_COLOR if trained else UNTRAINED_COLOR


def point(
    ax,
    x: float,
    y: float,
    yerr: float,
    color,
    marker: str,
    trained: bool,
    ms: float = 5,
    mew: float = 0.9,
    elinewidth: float = 0.8,
    label: str | None = None,
) -> None:
    """One value ± ``yerr`` at ``x``, filled when its temperature was trained on, open when not."""
    ax.errorbar(
        x,
        y,
        yerr=yerr,
        fmt=marker,
        color=color,
        mec=color,
        mfc=face_color(color, trained),
        ms=ms,
        mew=mew,
        elinewidth=elinewidth,
        label=label,
    )


def trained_untrained_handles(
    trained_color="0.3", untrained_color="0.3", marker: str = "o", ms: float = 5
) -> list[Line2D]:
    """Legend entries 'trained' (filled) and 'untrained' (open) of the marker rule."""
    return [
        Line2D([], [], ls="", marker=marker, color=trained_color, ms=ms, label="trained"),
        Line2D(
            [],
            [],
            ls="",
            marker=marker,
            color=untrained_color,
            mfc=face_color(untrained_color, False),
            ms=ms,
            label="untrained",
        ),
    ]


# ============================================================================ axes and ticks


def letter(ax, index: int) -> None:
    """Panel letter (a), (b), ... just above the top-left corner of the axes."""
    ax.text(
        0.0,
        1.015,
        f"({chr(ord('a') + index)})",
        transform=ax.transAxes,
        ha="left",
        va="bottom",
        fontsize=8,
    )


def tick_text(value: float, _pos=None) -> str:
    """A tick label: plain for 10⁻³ ≤ v < 10⁴, else m×10ᵏ in mathtext."""
    if 1e-3 <= abs(value) < 1e4 or value == 0:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    power = rf"10^{{{int(exponent)}}}"
    return f"${power}$" if mantissa == "1" else rf"${mantissa}\times {power}$"


def log_ticks(ax, which: str) -> None:
    """Readable major ticks on a log axis ('x' or 'y'), set once the data are drawn:
    1-2-5 steps when the axis spans less than two decades, decades otherwise; no minor labels."""
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    if not (lo > 0 and hi > lo):
        return
    span = math.log10(hi / lo)
    mantissas = (1, 2, 5) if span < 2.0 else (1,)
    ticks = [
        m * 10.0**k
        for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in mantissas
        if lo <= m * 10.0**k <= hi
    ]
    if len(ticks) < 2:
        ticks = [
            m * 10.0**k
            for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in range(1, 10)
            if lo <= m * 10.0**k <= hi
        ][::2]
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(tick_text))
    axis.set_minor_formatter(NullFormatter())


def temperature_ticks(axis) -> None:
    """At most five round ticks on a temperature axis."""
    axis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))


def panel_grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` panels, at most ``max_cols`` per row."""
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


# ============================================================================ panels


def cb_map_panel(ax, xy, types, values, box_length, norm, cmap) -> EllipseCollection:
    """Particles of the slab as discs of their diameter (σ_AA for A, σ_BB for B), by value."""
    d = np.where(np.asarray(types) == kalj.TYPE_A, kalj.SIGMA[0, 0], kalj.SIGMA[1, 1])
    discs = EllipseCollection(
        d,
        d,
        np.zeros_like(d),
        units="xy",
        offsets=xy,
        offset_transform=ax.transData,
        cmap=cmap,
        norm=norm,
        edgecolors="0.2",
        linewidths=0.2,
    )
    discs.set_array(np.asarray(values))
    ax.add_collection(discs)
    ax.set_xlim(0, box_length)
    ax.set_ylim(0, box_length)
    ax.set_aspect("equal")
    return discs


def diagonal_axes(ax) -> None:
    """Square T_pred-vs-T_MD axes holding every point and error bar drawn, with the diagonal
    T_pred = T_MD (dashed)."""
    ax.relim()
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lo, hi = min(x0, y0), max(x1, y1)
    ax.plot([lo, hi], [lo, hi], "--", color="0.4", lw=0.8, zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel(T_PRED_LABEL)
    temperature_ticks(ax.xaxis)
    temperature_ticks(ax.yaxis)


def sb_panel(
    ax,
    q: np.ndarray,
    md: np.ndarray,
    predictions: Sequence[tuple[np.ndarray, np.ndarray, str, str, str]],
) -> None:
    """S_B(q) on log-log axes: MD (open black circles) and each prediction (mean, std, colour,
    marker, legend text), a line with a band ± std where std > 0.

    Args:
        q: (Q,) bin centres, σ_AA⁻¹.
        md: (Q,) S_B(q) of the MD labels.
        predictions: per series (mean (Q,), std (Q,), colour, marker, legend text).
    """
    ax.loglog(q, md, "o", mfc="none", mec=MD_COLOR, ms=3.5, mew=0.7, label="MD", zorder=3)
    for mean, std, color, marker, text in predictions:
        ax.loglog(q, mean, "-", marker=marker, ms=2.5, color=color, label=text)
        if np.any(std > 0):
            ax.fill_between(
                q,
                np.clip(mean - std, 1e-300, None),
                mean + std,
                color=color,
                alpha=0.25,
                lw=0,
            )


def matrix_panel(
    fig,
    ax,
    matrix: np.ndarray,
    labels: Sequence[str],
    trained: Sequence[bool],
    title: str,
    vmax: float,
    symbol: str,
) -> None:
    """A (T, T) matrix as an annotated heat map (0 … ``vmax``) with its colour bar labelled
    ``symbol``; tick labels ``labels``, red where ``trained`` is False."""
    im = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.tick_params(top=False, right=False, length=2)
    for tick_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for text, was_trained in zip(tick_labels, trained, strict=True):
            text.set_color(temperature_text_color(was_trained))
    for i in range(len(labels)):
        for j in range(len(labels)):
            v = matrix[i, j]
            ax.text(
                j,
                i,
                f"{v:.2g}",
                ha="center",
                va="center",
                fontsize=5.5,
                color="white" if v < 0.6 * vmax else "black",
            )
    ax.set_xlabel(r"$T_j$")
    ax.set_ylabel(r"$T_i$")
    ax.set_title(title, fontsize=7)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(symbol)
    cbar.ax.tick_params(labelsize=6)


def positive(v: np.ndarray) -> np.ndarray:
    """``v`` with its non-positive values NaN (left out of a log axis)."""
    return np.where(v > 0, v, np.nan)


def mean_band(ax, x: np.ndarray, mean: np.ndarray, std: np.ndarray | None, color, label) -> None:
    """``mean`` vs ``x`` on a log axis (non-positive values left out), with a band ± ``std``
    when given."""
    ax.plot(x, positive(mean), color=color, lw=0.9, label=label)
    if std is not None:
        ax.fill_between(
            x,
            positive(mean - std),
            positive(mean + std),
            color=color,
            alpha=0.25,
            lw=0,
        )
