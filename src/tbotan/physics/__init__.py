"""The model system: the KALJ mixture and what is measured on its configurations.

- :mod:`~tbotan.physics.kalj`: the potential (parameters, species, pair energies and forces).
- :mod:`~tbotan.physics.configurations`: batches of configurations, GSD reading and writing.
- :mod:`~tbotan.physics.neighbors`: periodic neighbour search (cell lists, minimum image).
- :mod:`~tbotan.physics.observables`: bonds, C_B, F_s(q, t), MSD and τα on configurations.

Nothing here imports the pipeline configuration, the MD engines or the command layer.
"""
