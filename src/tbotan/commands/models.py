"""``tbotan models``: the pretrained ensembles shipped in the package, and their model cards.

Without arguments, one line per shipped model: its name, targets, the temperatures and N it was
trained on and its held-out scores beside the ridge baseline.  ``--show NAME`` prints the model
card (what it was trained on, the recipe, the scores, the applicability range that
``tbotan predict --model NAME`` enforces).  The registry is described in docs/formats.md
("Shipped models"); ``scripts/train_pretrained.py`` regenerates it.
"""

from __future__ import annotations

NAME = "models"
HELP = "list the pretrained models shipped in the package (--show NAME: its model card)"


def add_arguments(parser) -> None:
    parser.add_argument("--show", metavar="NAME", help="print the model card of NAME")


def run(args) -> int:
    from tbotan.learning import pretrained

    if args.show:
        print(pretrained.render_card(pretrained.read_card(args.show)), end="")
        return 0
    names = pretrained.available()
    if not names:
        print("no pretrained model is shipped with this installation")
        return 0
    for name in names:
        print(pretrained.summary_line(pretrained.read_card(name)))
    print("tbotan models --show NAME prints a model card; tbotan predict --model NAME uses it")
    return 0
