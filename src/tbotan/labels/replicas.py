"""Labels and graphs of one configuration from its isoconfigurational replicas.

One function, used by the pipeline's ``tbotan iso`` stage and by ``tbotan import-botan``, so
both produce identical datasets from identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbotan.formats.dataset import configuration_record
from tbotan.physics import neighbors, observables


@dataclass
class ConfigurationLabels:
    """Everything a dataset stores about one configuration besides its positions.

    Attributes:
        cb: (N,) C_B^j(t).
        propensity: (N,) ⟨|Δr_j(t)|⟩_iso.
        n_bonds: (N,) n_j.
        graph_is: (2, E) edges of the inherent-structure graph.
        edge_is: (E,) edge labels on them.
        graph_ts: (2, E') edges of the thermal-structure graph.
        edge_ts: (E',) edge labels on them.
        cb_extra: (T_x, N) C_B at extra times, or None.
    """

    cb: np.ndarray
    propensity: np.ndarray
    n_bonds: np.ndarray
    graph_is: np.ndarray
    edge_is: np.ndarray
    graph_ts: np.ndarray
    edge_ts: np.ndarray
    cb_extra: np.ndarray | None = None

    def record(
        self,
        *,
        types: np.ndarray,
        thermal_positions: np.ndarray,
        inherent_positions: np.ndarray,
        inherent_energy: float,
        origin: tuple[int, int],
    ) -> dict:
        """These labels with the configuration's positions, as one dataset record
        (:func:`tbotan.formats.dataset.configuration_record`)."""
        return configuration_record(
            types=types,
            thermal_positions=thermal_positions,
            inherent_positions=inherent_positions,
            inherent_energy=inherent_energy,
            cb=self.cb,
            propensity=self.propensity,
            n_bonds=self.n_bonds,
            graph=(self.graph_is, self.edge_is),
            graph_ts=(self.graph_ts, self.edge_ts),
            origin=origin,
            cb_extra=self.cb_extra,
        )


def configuration_labels(
    thermal_unwrapped: np.ndarray,
    final_unwrapped: np.ndarray,
    inherent: np.ndarray,
    types: np.ndarray,
    box,
    bond_in: float,
    bond_out: float,
    graph_cutoff: float,
    extra_final_unwrapped: np.ndarray | None = None,
) -> ConfigurationLabels:
    """Labels of one configuration.

    Args:
        thermal_unwrapped: (N, 3) thermal positions at t = 0 (unwrapped, the replicas' origin).
        final_unwrapped: (R, N, 3) replica positions at the label time, unwrapped.
        inherent: (N, 3) inherent structure (any image).
        types: (N,) species.
        box: cubic edge or (3,) edges.
        bond_in, bond_out: C_B thresholds in units of σ_jk.
        graph_cutoff: edge cut-off (σ_AA) of both graphs.
        extra_final_unwrapped: optional (T_x, R, N, 3) replica positions at extra times.
    """
    bb = observables.bond_breaking(
        thermal_unwrapped, final_unwrapped, types, box, bond_in, bond_out
    )
    graph_is = neighbors.graph_edges(inherent, box, graph_cutoff)
    graph_ts = neighbors.graph_edges(thermal_unwrapped, box, graph_cutoff)
    cb_extra = None
    if extra_final_unwrapped is not None:
        cb_extra = np.stack(
            [
                observables.bond_breaking(thermal_unwrapped, f, types, box, bond_in, bond_out).cb
                for f in extra_final_unwrapped
            ]
        )
    return ConfigurationLabels(
        cb=bb.cb,
        propensity=observables.propensity(thermal_unwrapped, final_unwrapped),
        n_bonds=bb.n_bonds,
        graph_is=graph_is,
        edge_is=observables.edge_labels(thermal_unwrapped, final_unwrapped, graph_is, box),
        graph_ts=graph_ts,
        edge_ts=observables.edge_labels(thermal_unwrapped, final_unwrapped, graph_ts, box),
        cb_extra=cb_extra,
    )
