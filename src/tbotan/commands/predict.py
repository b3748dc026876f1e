"""``tbotan predict``: predictions of a trained model for a dataset file or one configuration.

For a dataset file every configuration is predicted; for a user configuration (a GSD frame or
a BOTAN-style ``.npz``), its inherent structure is used when given and otherwise obtained by
FIRE.  Writes a predictions file (docs/formats.md): C_B per particle, edge predictions, T_pred
and the global embedding.  The model file fixes the input variant and graph cut-off.
"""

from __future__ import annotations

from tbotan.commands.common import add_config_argument, load_config, make_engine_from_config

NAME = "predict"
HELP = "predict C_B, edge labels, T and embeddings with a trained model"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model.pt written by tbotan train")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a dataset file (.h5)")
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
    parser.add_argument("--out", required=True, help="predictions file to write (.h5)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--engine",
        choices=["auto", "torch", "hoomd"],
        default=None,
        help="engine of the FIRE quench (default: the configuration's)",
    )
    add_config_argument(parser)


def run(args) -> int:
    from tbotan import config as cfgmod
    from tbotan.inference import (
        load_model,
        predict_configuration,
        predict_dataset,
        read_user_configuration,
    )

    trained = load_model(args.model, args.device)
    if args.dataset:
        if args.temperature is not None:
            print("note: --temperature is ignored for a dataset file (it carries its own)")
        summary = predict_dataset(trained, args.dataset, args.out)
        r = summary["pearson"]
        print(
            f"{len(r)} configurations; Pearson(C_B) over A particles: mean "
            f"{sum(r) / len(r):.3f}; mean T_pred {summary['t_pred']:.4f}"
        )
    else:
        config = load_config(args) if args.config else trained.config
        conf = read_user_configuration(
            gsd=args.gsd,
            frame=args.frame,
            inherent_gsd=args.inherent_gsd,
            npz=args.npz,
            box=args.box,
        )
        engine = fire = None
        if conf.inherent_positions is None and trained.variant != "ts":
            engine = make_engine_from_config(config, args.engine)
            fire = cfgmod.fire_parameters(config)
            print(f"quenching {conf.source} to its inherent structure ({engine.name} engine)")
        pred = predict_configuration(
            trained, conf, args.out, temperature=args.temperature, engine=engine, fire=fire
        )
        print(f"T_pred = {float(pred['t_pred']):.4f}; mean predicted C_B = {pred['cb'].mean():.4f}")
    print(f"written: {args.out}")
    return 0
