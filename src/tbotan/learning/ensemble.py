"""Seed ensembles: K independently trained models read as one predictor.

A trained T-BOTAN is stochastic (initialisation, batch order, dropout): two seeds, or one seed on
another CPU, give networks whose per-configuration predictions differ by about as much as the
model's own errors (docs/results.md).  The product is therefore the ensemble of K seeds: its
prediction is the members' mean, its uncertainty their spread.  :func:`combine_members` is the
one place that reduces members' predictions; ``tbotan predict`` with several ``--model`` files
and the analysis of a run (:mod:`tbotan.analysis.runs`) both use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: The predictions every member gives, averaged by :func:`combine_members`.
AVERAGED = ("cb", "edge", "t_pred")


def combine_members(members: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ensemble prediction of K members that predicted the same configurations.

    Args:
        members: K ≥ 1 mappings with ``cb`` (..., N), ``edge`` (E,), ``t_pred`` (...) and
            ``embedding`` (..., H) of one model each (shapes equal across members; ``...`` is
            () for one configuration or (C,) for a dataset).

    Returns:
        ``cb``, ``edge``, ``t_pred``: the members' mean (float32; computed in float64);
        ``cb_std``, ``edge_std``, ``t_pred_std``: their population standard deviation over
        members (ddof = 0; zero for one member); ``member_t_pred``: (K, ...) each member's
        T_pred; ``embedding``: the members' embeddings concatenated along the last axis,
        (..., K·H) (each member has its own embedding space, so a mean of embeddings would
        mean nothing).  One member gives back its own predictions.

    Raises:
        ValueError: no member, a missing key, or shapes that differ between members.
    """
    if len(members) == 0:
        raise ValueError("an ensemble needs at least one member")
    out: dict[str, np.ndarray] = {}
    for key in (*AVERAGED, "embedding"):
        missing = [k for k, m in enumerate(members) if key not in m]
        if missing:
            raise ValueError(f"ensemble members {missing} give no {key!r}")
        shapes = {np.shape(m[key]) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on the shape of {key!r}: {sorted(shapes)}")
    for key in AVERAGED:
        stack = np.stack([np.asarray(m[key], np.float64) for m in members])  # (K, ...)
        out[key] = stack.mean(axis=0).astype(np.float32)
        out[f"{key}_std"] = stack.std(axis=0).astype(np.float32)
    out["member_t_pred"] = np.stack([np.asarray(m["t_pred"], np.float32) for m in members])
    out["embedding"] = np.concatenate(
        [np.asarray(m["embedding"], np.float32) for m in members], axis=-1
    )
    return out


def ensemble_attrs(members: Sequence[Mapping]) -> dict:
    """The predictions-file attributes of an ensemble from its members' (``TrainedModel.attrs``).

    One member's attributes are returned unchanged.  For several, the attributes equal for
    every member keep their value; ``model``, ``seed`` and ``epoch`` become lists over members,
    and ``members`` (the members' model ids) and ``n_members`` are added.

    Raises:
        ValueError: members of different input variants, λ_g or edge graphs (not one predictor).
    """
    if len(members) == 0:
        raise ValueError("an ensemble needs at least one member")
    first = dict(members[0])
    for key in ("variant", "lambda_global", "edge_graph"):
        values = sorted({str(m[key]) for m in members})
        if len(values) != 1:
            raise ValueError(
                f"ensemble members must share {key}: got {values} (models "
                f"{[m['model'] for m in members]})"
            )
    if len(members) == 1:
        return first
    out = dict(first)
    for key in ("model", "seed", "epoch"):
        out[key] = [m[key] for m in members]
    out["members"] = [m["model"] for m in members]
    out["n_members"] = len(members)
    return out
