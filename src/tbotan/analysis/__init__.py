"""The analysis stage: the paper's observables, a run read as a whole, its summary and figures.

- :mod:`~tbotan.analysis.metrics`: Pearson ρ (Eq. A1), seed statistics, P(T_pred/T_MD) (Eq. B1),
  embedding distances D(T_i, T_j) (Eq. 11–12).
- :mod:`~tbotan.analysis.structure_factor`: the four-point structure factor S_B(q) (Eq. 10).
- :mod:`~tbotan.analysis.runs`: model ids and a run directory read into a ``RunAnalysis``.
- :mod:`~tbotan.analysis.summary`: ``summary.json`` and ``summary.md``.
- :mod:`~tbotan.analysis.figures`: the paper's figures (``tbotan figures``).
"""
