"""The label stage: isoconfigurational replicas → C_B, propensity and edge labels.

- :mod:`~tbotan.labels.replicas`: labels and graphs of one configuration from its replicas
  (the single function shared by ``tbotan iso`` and ``tbotan import-botan``).
- :mod:`~tbotan.labels.chunks`: ``tbotan iso`` (one chunk of configurations run and labelled)
  and ``tbotan dataset`` (chunks joined and cut into train / validation / test files).
- :mod:`~tbotan.labels.botan`: the same labels from published BOTAN/GlassBench replicas.
"""
