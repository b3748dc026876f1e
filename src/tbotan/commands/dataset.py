"""Dataset files of one temperature from its label chunks (docs/formats.md).

Joins the chunks written by ``tbotan iso`` and cuts them into ``T{T}_train.h5``,
``T{T}_validation.h5`` and ``T{T}_test.h5`` (only the test file for temperatures the model does
not train on); ``--split`` writes one of them.  Every file is validated as it is written.
"""

from __future__ import annotations

from tbotan.commands.common import add_config_argument, load_config

NAME = "dataset"
HELP = "join label chunks into the train/validation/test files of one temperature"


def add_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--temperature", required=True)
    parser.add_argument("--chunks", nargs="+", required=True, help="label chunk files (.h5)")
    parser.add_argument(
        "--split",
        choices=["train", "validation", "test"],
        default=None,
        help="write only this split to --output (default: every split of T)",
    )
    parser.add_argument("--output", default=None, help="dataset file of --split")
    parser.add_argument("--output-dir", default=None, help="folder for every split of T")


def run(args) -> int:
    from pathlib import Path

    from tbotan.cli import UserError
    from tbotan.formats.dataset import write_dataset
    from tbotan.formats.io_utils import check_writable, remove_quietly
    from tbotan.labels.chunks import assemble_splits, split_file_names
    from tbotan.physics import kalj

    config = load_config(args, check_engine=False)
    T = float(args.temperature)
    names = split_file_names(config, T)
    if args.split is not None:
        if args.output is None:
            raise UserError("--split needs --output")
        if args.split not in names:
            raise UserError(f"T = {T:g} has no {args.split} split (it is not trained on)")
        targets = {args.split: Path(args.output)}
    elif args.output_dir is not None:
        targets = {s: Path(args.output_dir) / name for s, name in names.items()}
    else:
        raise UserError("give --split with --output, or --output-dir")
    check_writable(*targets.values())
    splits = assemble_splits(config, T, args.chunks)
    written = []
    for split, path in targets.items():
        content = splits[split]
        try:
            write_dataset(path, content)
        except BaseException:
            for done in written:  # every split of T, or none
                remove_quietly(done)
            raise
        written.append(path)
        a = content.types == kalj.TYPE_A
        print(
            f"wrote {path}: {content.n_configurations} configurations, mean C_B(A) = "
            f"{content.cb[a].mean():.4f}"
        )
    return 0
