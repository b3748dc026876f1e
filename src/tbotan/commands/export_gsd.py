"""``tbotan export-gsd``: labels and predictions as a GSD file that OVITO, freud and HOOMD-blue
read.

One frame per configuration of a dataset file and/or predictions files: the thermal (or, with
``--structure inherent``, the inherent) structure with per-type diameters (A 1.0, B 0.88),
the per-particle arrays as ``log/particles/<name>`` (``cb_md``, ``propensity_md``,
``n_bonds``, ``cb_pred`` and, for several predictions files of an ensemble, ``cb_pred_std``),
T_pred and the other per-configuration numbers as ``log/<name>``, and the edges of the graph
the edge labels live on as bonds with ``log/bonds/edge_md``, ``edge_pred`` (and
``edge_pred_std``).  Schema in docs/formats.md ("Exported GSD files").
"""

from __future__ import annotations

NAME = "export-gsd"
HELP = "write labels and predictions as a GSD file for OVITO, freud and HOOMD-blue"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--dataset",
        help="dataset file (.h5): positions, MD labels and graphs (default for predictions of a "
        "dataset: the file their 'dataset' attribute names)",
    )
    parser.add_argument(
        "--predictions",
        nargs="+",
        default=[],
        help="predictions file(s) (.h5) of the same inputs; several (an ensemble's members) are "
        "exported as their mean and standard deviation",
    )
    parser.add_argument(
        "--structure",
        choices=["thermal", "inherent"],
        default="thermal",
        help="which structure the frames hold",
    )
    parser.add_argument(
        "--configurations",
        nargs="+",
        type=int,
        default=None,
        help="indices of the configurations to export (default: all)",
    )
    parser.add_argument("--output", required=True, help="the GSD file to write")


def run(args) -> int:
    from tbotan.cli import UserError
    from tbotan.formats.gsd_export import export_gsd
    from tbotan.formats.io_utils import check_writable

    if args.dataset is None and not args.predictions:
        raise UserError(
            "give a dataset file (--dataset), predictions files (--predictions) or both"
        )
    check_writable(args.output)
    summary = export_gsd(
        args.output,
        dataset=args.dataset,
        predictions=args.predictions,
        structure=args.structure,
        configurations=args.configurations,
    )
    print(
        f"wrote {summary.path}: {summary.n_frames} frames of N = {summary.n_particles} "
        f"({args.structure} structure); particle properties {summary.particle_logs}, bonds "
        f"(edges of {summary.bond_graph}) {summary.bond_logs}, attributes {summary.frame_logs}"
    )
    return 0
