"""``tbotan train``: train one T-BOTAN model on mixed temperatures (no temperature input).

Writes ``checkpoint.pt`` and ``metrics.live.csv`` (progress) while training and, at the end,
``metrics.csv`` and ``model.pt`` into ``--output`` (docs/formats.md); SIGTERM/SIGUSR1 make it
checkpoint after the current epoch and exit with status 128 + the signal number.  The input
variant and λ_g are configuration (``model.variant``,
``training.lambda_global``) and may be overridden here; the model id is
``{variant}_lg{λ_g}_s{seed}``.
"""

from __future__ import annotations

from tbotan.commands.common import add_config_argument, add_output_argument, load_config

NAME = "train"
HELP = "train T-BOTAN on dataset files (mixed temperatures)"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--train", nargs="+", required=True, metavar="H5", help="training dataset files"
    )
    parser.add_argument(
        "--validation",
        nargs="*",
        default=[],
        metavar="H5",
        help="validation dataset files, evaluated after every epoch",
    )
    add_output_argument(parser, "--out", required=True, help="model folder (models/<model id>)")
    parser.add_argument(
        "--variant", choices=["is+ts", "is", "ts"], default=None, help="default: model.variant"
    )
    parser.add_argument(
        "--lambda-global", type=float, default=None, help="λ_g (default: training.lambda_global)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of this training")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="default: training.device"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/checkpoint.pt when it exists (else start afresh); a "
        "checkpoint of other settings is an error",
    )
    parser.add_argument(
        "--restart-if-incompatible",
        action="store_true",
        help="with --resume: a checkpoint of other settings (e.g. a changed learning rate) is "
        "moved to <out>/checkpoint.stale.pt and training starts afresh (what the workflow does)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_argument(parser)


def run(args) -> int:
    from pathlib import Path

    from tbotan import config as cfgmod
    from tbotan.formats.io_utils import check_writable
    from tbotan.learning.training import train
    from tbotan.names import parse_validation_column

    config = load_config(args, check_engine=False)
    check_writable(Path(args.out) / "metrics.csv")
    if args.epochs is not None:
        overlay = {"training": {"epochs": args.epochs}}
        if config["training"]["warmup_epochs"] > args.epochs:
            overlay["training"]["warmup_epochs"] = args.epochs
            print(f"note: warm-up shortened to {args.epochs} epochs (--epochs)")
        config = cfgmod.validate(cfgmod.merge(config, overlay), check_engine=False)
    result = train(
        config,
        args.train,
        args.validation,
        args.out,
        variant=args.variant,
        lambda_global=args.lambda_global,
        seed=args.seed,
        device=args.device,
        resume="compatible" if args.resume and args.restart_if_incompatible else args.resume,
        progress=not args.no_progress,
    )
    last = result.metrics[-1] if result.metrics else {}
    pearsons = {
        parsed[1]: value
        for parsed, value in ((parse_validation_column(k), v) for k, v in last.items())
        if parsed is not None and parsed[0] == "pearson"
    }
    shown = ", ".join(f"T{label}: {v:.3f}" for label, v in pearsons.items())
    target = cfgmod.NODE_TARGET_TEXT[config["model"]["node_target"]]
    print(
        f"trained {result.model_id} on {target} for {result.epochs} epochs"
        + (f"; final loss {last['loss']:.4g}" if last else "")
        + (f"; validation Pearson {shown}" if shown else "")
    )
    if result.model_path is not None:
        print(f"written: {result.model_path}")
    return 0
