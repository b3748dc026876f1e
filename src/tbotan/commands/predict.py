"""``tbotan predict``: predictions of a trained model for a dataset file or one configuration.

For dataset files every configuration is predicted (several files with one ``--output`` each, so
a model is loaded once); for a user configuration (a GSD frame or a BOTAN-style ``.npz``), its
inherent structure is used when given and otherwise obtained by FIRE (refused first, naming the
closest pair, when particles overlap).  Writes a predictions file (docs/formats.md): the model's
node target per particle (C_B or the propensity, named by the file's ``node_target`` attribute
and printed), edge predictions, T_pred and the global embedding.  The model file fixes the input
variant, node target and graph cut-off.  Several model files (the seeds of one model) predict
as a seed ensemble: their mean and spread are written.
"""

from __future__ import annotations

from tbotan.commands.common import add_config_argument, add_output_argument, load_config

NAME = "predict"
HELP = "predict C_B (or the propensity), edge labels, T and embeddings with a trained model"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        nargs="+",
        help="model.pt written by tbotan train; several (the seeds of one model) predict as a "
        "seed ensemble: the members' mean and their spread are written; or the name of a "
        "pretrained ensemble shipped in the package (tbotan models lists them)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", nargs="+", help="dataset file(s) (.h5)")
    source.add_argument("--gsd", help="a GSD file holding the thermal structure")
    source.add_argument(
        "--npz", help="a BOTAN-style .npz (types, initial_positions[, inherent_positions, box])"
    )
    parser.add_argument("--frame", type=int, default=0, help="GSD frame (default 0)")
    parser.add_argument(
        "--inherent-gsd", help="GSD file holding the inherent structure of the same frame"
    )
    parser.add_argument("--box", type=float, default=None, help="cubic box edge for an .npz")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="temperature label stored in the output (never a model input)",
    )
    add_output_argument(
        parser, "--out", nargs="+", required=True, help="predictions file(s), one per input"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--allow-extrapolation",
        action="store_true",
        help="predict also for a density, composition or N unlike the model's training data "
        "(refused by default)",
    )
    parser.add_argument(
        "--engine",
        choices=["auto", "torch", "hoomd"],
        default=None,
        help="engine of the FIRE quench (default: the configuration's)",
    )
    add_config_argument(parser)


def run(args) -> int:
    from tbotan.cli import UserError
    from tbotan.config import NODE_TARGET_TEXT
    from tbotan.formats.dataset import DatasetFile
    from tbotan.formats.io_utils import check_writable
    from tbotan.labels.botan import check_user_npz
    from tbotan.learning.inference import (
        as_members,
        check_no_overlaps,
        load_model,
        predict_configuration,
        predict_dataset,
        read_user_configuration,
    )
    from tbotan.learning.pretrained import resolve_model_arguments
    from tbotan.physics.configurations import read_gsd
    from tbotan.pipeline import fire_parameters, make_engine_from_config

    model_files, shipped = resolve_model_arguments(args.model)
    n_inputs = len(args.dataset) if args.dataset else 1
    if len(args.out) != n_inputs:
        raise UserError(f"give one --output per input: {n_inputs} inputs, {len(args.out)} outputs")
    check_writable(*args.out)
    # every input is checked before the model is loaded, anything is quenched or written
    if args.npz:
        check_user_npz(args.npz, args.box)
    if args.gsd:
        read_gsd(args.gsd, frames=[args.frame])
        if args.inherent_gsd:
            read_gsd(args.inherent_gsd, frames=[args.frame])
    for dataset in args.dataset or []:
        DatasetFile(dataset)
    conf = None
    if not args.dataset:
        conf = read_user_configuration(
            gsd=args.gsd,
            frame=args.frame,
            inherent_gsd=args.inherent_gsd,
            npz=args.npz,
            box=args.box,
        )
        check_no_overlaps(conf)  # before any FIRE, where an engine would fail in its own words
    trained = as_members([load_model(path, args.device) for path in model_files])
    if len(trained) > 1:
        print(f"seed ensemble of {len(trained)} models: writing their mean and spread")
    target = NODE_TARGET_TEXT[trained[0].node_target]
    print(
        f"{shipped or ' '.join(args.model)}: predicts {target} per particle (model.node_target "
        f"{trained[0].node_target})"
    )
    if args.dataset:
        if args.temperature is not None:
            print("note: --temperature is ignored for a dataset file (it carries its own)")
        for dataset, out in zip(args.dataset, args.out, strict=True):
            summary = predict_dataset(
                trained, dataset, out, allow_extrapolation=args.allow_extrapolation
            )
            r = summary["pearson"]
            print(
                f"{dataset}: {len(r)} configurations; Pearson({target}) over A particles: mean "
                f"{sum(r) / len(r):.3f}; mean T_pred {summary['t_pred']:.4f}; written {out}"
            )
        return 0
    out = args.out[0]
    config = load_config(args) if args.config else trained[0].config
    engine = fire = None
    if conf.inherent_positions is None and trained[0].variant != "ts":
        engine = make_engine_from_config(config, args.engine)
        fire = fire_parameters(config)
        print(f"quenching {conf.source} to its inherent structure ({engine.name} engine)")
    pred = predict_configuration(
        trained,
        conf,
        out,
        temperature=args.temperature,
        engine=engine,
        fire=fire,
        allow_extrapolation=args.allow_extrapolation,
    )
    print(
        f"T_pred = {float(pred['t_pred']):.4f}; mean predicted {target} = {pred['cb'].mean():.4f}"
    )
    print(f"written: {out}")
    return 0
