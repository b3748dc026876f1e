"""Render a frame of a ``tbotan export-gsd`` file with OVITO, particles coloured by properties.

One panel per property (e.g. ``cb_md cb_pred``: the MD labels beside the predictions), each
drawn by OVITO's Python API headless (Tachyon ray tracer: no OpenGL, no display) with the
particles at their GSD diameters, then set side by side with a colour bar each::

    tbotan export-gsd --dataset T_test.h5 --predictions pred.h5 --output conf.gsd
    python scripts/render_ovito.py conf.gsd --properties cb_md cb_pred --output conf.png

Needs the ``viz`` extra (``pip install .[viz]``: ovito).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Panel titles of the properties ``tbotan export-gsd`` writes.
TITLES = {
    "cb_md": "C_B from the MD (isoconfigurational)",
    "cb_pred": "C_B predicted by T-BOTAN",
    "cb_pred_std": "spread of the predicted C_B (ensemble)",
    "propensity_md": "propensity from the MD (σ_AA)",
}


def render_panel(gsd: Path, frame: int, prop: str, size: int, image: Path) -> tuple[float, float]:
    """Render particles of ``frame`` coloured by ``prop`` into ``image``; the colour range."""
    from ovito.io import import_file
    from ovito.modifiers import ColorCodingModifier
    from ovito.vis import TachyonRenderer, Viewport

    pipeline = import_file(str(gsd))
    values = pipeline.compute(frame).particles[prop][...]
    low, high = (float(v) for v in np.percentile(values, [2, 98]))
    pipeline.modifiers.append(
        ColorCodingModifier(
            property=prop,
            start_value=low,
            end_value=high,
            gradient=ColorCodingModifier.Viridis(),
        )
    )
    source = pipeline.source.data
    if source.particles.bonds is not None:  # the graph's ~40 edges per particle hide the colours
        source.particles.bonds.vis.enabled = False
    source.cell.vis.rendering_color = (0.3, 0.3, 0.3)
    pipeline.add_to_scene()
    try:
        viewport = Viewport(type=Viewport.Type.Perspective, camera_dir=(-1.0, -0.6, -0.5))
        viewport.zoom_all()
        viewport.render_image(
            size=(size, size),
            filename=str(image),
            background=(1.0, 1.0, 1.0),
            frame=frame,
            renderer=TachyonRenderer(ambient_occlusion=False, shadows=False),
        )
    finally:
        pipeline.remove_from_scene()
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gsd", type=Path, help="a GSD file written by tbotan export-gsd")
    parser.add_argument("--frame", type=int, default=0, help="frame (configuration) to draw")
    parser.add_argument(
        "--properties", nargs="+", default=["cb_md", "cb_pred"], help="particle properties"
    )
    parser.add_argument("--size", type=int, default=600, help="pixels per panel (square)")
    parser.add_argument("--title", default="", help="a line above the panels")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    n = len(args.properties)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.9), squeeze=False)
    with tempfile.TemporaryDirectory() as tmp:
        for ax, prop in zip(axes[0], args.properties, strict=True):
            png = Path(tmp) / f"{prop}.png"
            low, high = render_panel(args.gsd, args.frame, prop, args.size, png)
            ax.imshow(plt.imread(png))
            ax.set_axis_off()
            ax.set_title(TITLES.get(prop, prop), fontsize=10)
            mappable = plt.cm.ScalarMappable(Normalize(low, high), colormaps["viridis"])
            fig.colorbar(mappable, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02)
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95 if args.title else 1.0))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
