"""Convert BOTAN/GlassBench-style isoconfigurational ``.npz`` files into a dataset file.

Each input holds one configuration: ``types``, ``initial_positions`` (t = 0) and
``positions`` (R replicas at the label time, unwrapped).  The box edge and the temperature
are not in the files and must be given.  Every configuration is quenched to its inherent
structure (FIRE), labelled (C_B, propensity, edge labels) and given its two graphs; the result
follows docs/formats.md and trains like pipeline data.
"""

from __future__ import annotations

from tbotan.commands.common import (
    add_config_argument,
    check_memory,
    load_config,
)
from tbotan.progress import progress_bar

NAME = "import-botan"
HELP = "convert BOTAN/GlassBench .npz files into a dataset file"


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="BOTAN-style .npz files, one configuration each")
    parser.add_argument("--box", type=float, required=True, help="cubic box edge L (σ_AA)")
    parser.add_argument(
        "--temperature", type=float, required=True, help="temperature T of the data"
    )
    parser.add_argument(
        "--tau-alpha",
        type=float,
        default=None,
        help="τα of the data (default: the paper's Table I value at T)",
    )
    parser.add_argument(
        "--label-time",
        type=float,
        default=None,
        help="time of the stored replica positions (default: τα)",
    )
    parser.add_argument("--split", default="test", help="split name stored in the file")
    parser.add_argument("--output", required=True, help="dataset file to write (.h5)")
    parser.add_argument(
        "--engine",
        choices=["auto", "torch", "hoomd"],
        default=None,
        help="engine of the FIRE quench (default: the configuration's)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    add_config_argument(parser)


def run(args) -> int:
    from tbotan.formats.dataset import write_dataset
    from tbotan.formats.io_utils import check_writable
    from tbotan.labels.botan import import_botan
    from tbotan.physics import kalj
    from tbotan.pipeline import fire_parameters, make_engine_from_config

    config = load_config(args)
    check_writable(args.output)
    engine = make_engine_from_config(config, args.engine, args.device)
    print(f"quenching {len(args.inputs)} configurations with FIRE ({engine.name} engine) ...")
    bar = progress_bar(len(args.inputs), "labelling")
    try:
        content = import_botan(
            args.inputs,
            box=args.box,
            temperature=args.temperature,
            engine=engine,
            tau_alpha=args.tau_alpha,
            label_time=args.label_time,
            split=args.split,
            bond_in=config["iso"]["bond_in"],
            bond_out=config["iso"]["bond_out"],
            graph_cutoff=config["graph"]["cutoff"],
            fire=fire_parameters(config),
            progress=lambda done, total: bar.update(1),
            before_md=lambda systems, n: check_memory(config, "import-botan", engine, systems, n),
        )
    finally:
        bar.close()
    write_dataset(args.output, content)
    a = content.types == kalj.TYPE_A
    print(
        f"wrote {args.output}: {content.n_configurations} configurations at T = "
        f"{args.temperature}; mean C_B(A) = {content.cb[a].mean():.5f}, "
        f"mean e_IS/N = {content.inherent_energy.mean():.5f}"
    )
    return 0
