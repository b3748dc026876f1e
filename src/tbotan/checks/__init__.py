"""Checks of the implementation against references: benchmarks and physical validation.

- :mod:`~tbotan.checks.benchmark`: engine, training and inference throughputs
  (``tbotan benchmark``).
- :mod:`~tbotan.checks.benchmark_fire`: FIRE against LAMMPS on BOTAN configurations.
- :mod:`~tbotan.checks.validation`: the engines against the paper's Table I and each other
  (``tbotan validate``).
"""
