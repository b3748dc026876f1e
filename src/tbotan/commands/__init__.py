"""Sub-commands of ``tbotan``: one module per command.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``.  Modules import heavy dependencies inside ``run`` so that
``tbotan --help`` stays fast.  :data:`COMMANDS` lists them in the order ``--help`` shows.
"""

COMMANDS = [
    "equilibrate",
    "tau-alpha",
    "quench",
    "iso",
    "dataset",
    "train",
    "predict",
    "models",
    "figures",
    "export-gsd",
    "import-botan",
    "validate",
    "benchmark",
]
