"""T-BOTAN: BOTAN's interaction network with a global branch (PHYSICS.md §7, paper Sec. II B).

Encode–process–decode on one configuration's graph (N nodes, E directed edges), hidden size H:

* encoders: ``h⁰ = h_enc = MLP_n(x)`` (species one-hot → H), ``e⁰ = e_enc = MLP_ε(edge features)``;
* ``M`` message-passing steps with one shared edge MLP and one shared node MLP (BOTAN)::

      e_jk ← MLP_e([h_j, h_k, e_jk, e_enc,jk])           for every edge j → k
      h_k  ← MLP_v([h_k, h_enc,k, Σ_{j→k} e_jk])          sum over the edges entering k

* the global branch of the paper's Eq. (3), never fed back into nodes or edges::

      g⁰ = 0 ∈ R^H,   g^m = MLP_g([g^{m−1}, (1/N) Σ_v h_v^m]),   m = 1..M

* three separate decoders: node → C_B, edge → E_jk, global → T_pred (paper Eq. 4).  ``g^M``
  (before its decoder) is the global embedding of the paper's Fig. 5.

Every MLP has ``mlp_layers`` hidden layers of width H with ReLU (BOTAN's MLPs, paper: "two
hidden layers, where each consists of 64 units"); encoders and update MLPs output their last
hidden layer, decoders end with a linear map to one number.

Implementation note (performance, not physics): the first layer of an MLP on a concatenation is
a sum of linear maps of the parts, ``W [a; b; c; d] = W_a a + W_b b + W_c c + W_d d``.  The edge
update therefore projects node states once per node and gathers them on edges (instead of
multiplying E gathered copies), and the terms of the encoded inputs, which do not change
between steps, are computed once per forward.  The result is the same function as
``MLP(torch.cat(parts))`` (tested), with about half the work of the edge update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn


class MLP(nn.Module):
    """``layers`` × (Linear → ReLU) of width ``hidden``, then optionally Linear → ``out``.

    The input may be given as several parts, ``mlp(a, b, c) == mlp(torch.cat([a, b, c], -1))``,
    with part sizes ``in_sizes``; :meth:`project` and :meth:`finish` expose the first layer's
    linear map per part so that callers can reuse or gather projections.

    Args:
        in_sizes: size of the input, or sizes of its parts.
        hidden: width of every hidden layer.
        layers: number of hidden layers (≥ 1).
        out: size of a final linear output layer (decoders), or None to output the last hidden
            layer (encoders and update functions).
    """

    def __init__(
        self, in_sizes: int | Sequence[int], hidden: int, layers: int, out: int | None = None
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"an MLP needs at least one hidden layer, got {layers}")
        self.in_sizes = (in_sizes,) if isinstance(in_sizes, int) else tuple(in_sizes)
        offsets = [0]
        for size in self.in_sizes:
            offsets.append(offsets[-1] + size)
        self._offsets = offsets
        self.hidden = nn.ModuleList(
            [nn.Linear(offsets[-1], hidden)]
            + [nn.Linear(hidden, hidden) for _ in range(layers - 1)]
        )
        self.output = nn.Linear(hidden, out) if out is not None else None

    def project(self, x: torch.Tensor, part: int, add: torch.Tensor | None = None) -> torch.Tensor:
        """First-layer linear map of input part ``part`` (no bias): (M, in_sizes[part]) → (M, H).

        With ``add`` (M, H), returns ``add + W_part x`` in one fused operation.
        """
        lo, hi = self._offsets[part], self._offsets[part + 1]
        weight = self.hidden[0].weight[:, lo:hi]
        if add is None:
            return nn.functional.linear(x, weight)
        return torch.addmm(add, x, weight.t())

    @property
    def bias(self) -> torch.Tensor:
        """(H,) bias of the first layer."""
        return self.hidden[0].bias

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """The rest of the MLP from the first layer's pre-activation (..., H).

        ``pre`` is overwritten (the activation is applied in place to save memory traffic).
        """
        h = torch.relu_(pre)
        for layer in self.hidden[1:]:
            h = torch.relu_(layer(h))
        return h if self.output is None else self.output(h)

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        if len(parts) != len(self.in_sizes):
            raise ValueError(f"this MLP takes {len(self.in_sizes)} input parts, got {len(parts)}")
        pre = self.bias + sum(self.project(p, i) for i, p in enumerate(parts))
        return self.finish(pre)


class TBotanOutput(NamedTuple):
    """Predictions for one configuration.

    Attributes:
        cb: (N,) predicted C_B.
        edge: (E,) predicted edge labels E_jk (σ_AA).
        t_pred: () predicted temperature.
        embedding: (H,) global embedding g^M (before the global decoder).
    """

    cb: torch.Tensor
    edge: torch.Tensor
    t_pred: torch.Tensor
    embedding: torch.Tensor


class TBotan(nn.Module):
    """T-BOTAN (see the module documentation for the equations).

    Args:
        edge_features: F, number of edge input features (4 for ``is+ts``, 3 otherwise).
        node_features: number of node input features (2: one-hot species).
        hidden: H, width of every latent vector and hidden layer (64).
        mlp_layers: hidden layers per MLP (2).
        message_passing_steps: M (7).

    Example::

        model = TBotan(edge_features=4)
        out = model(data.x, data.edge_index, data.edge_attr)
        out.cb, out.edge, out.t_pred, out.embedding
    """

    def __init__(
        self,
        edge_features: int,
        node_features: int = 2,
        hidden: int = 64,
        mlp_layers: int = 2,
        message_passing_steps: int = 7,
    ) -> None:
        super().__init__()
        self.hparams = dict(
            edge_features=int(edge_features),
            node_features=int(node_features),
            hidden=int(hidden),
            mlp_layers=int(mlp_layers),
            message_passing_steps=int(message_passing_steps),
        )
        H, L = hidden, mlp_layers
        self.steps = message_passing_steps
        self.node_encoder = MLP(node_features, H, L)
        self.edge_encoder = MLP(edge_features, H, L)
        self.edge_mlp = MLP((H, H, H, H), H, L)  # [h_src, h_dst, e, e_enc]
        self.node_mlp = MLP((H, H, H), H, L)  # [h, h_enc, Σ incoming e]
        self.global_mlp = MLP((H, H), H, L)  # [g^{m-1}, mean_v h]
        self.node_decoder = MLP(H, H, L, out=1)
        self.edge_decoder = MLP(H, H, L, out=1)
        self.global_decoder = MLP(H, H, L, out=1)

    @classmethod
    def from_config(cls, config: dict, variant: str | None = None) -> TBotan:
        """The model of a configuration's ``model`` section (variant: its own by default)."""
        from tbotan.graphs import EDGE_FEATURES, NODE_FEATURES, check_variant

        m = config["model"]
        variant = check_variant(variant or m["variant"])
        return cls(
            edge_features=EDGE_FEATURES[variant],
            node_features=NODE_FEATURES,
            hidden=m["hidden"],
            mlp_layers=m["mlp_layers"],
            message_passing_steps=m["message_passing_steps"],
        )

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> TBotanOutput:
        """Predictions for one graph.

        Args:
            x: (N, node_features) node inputs (one-hot species).
            edge_index: (2, E) int64 edges (source j, target k).
            edge_attr: (E, edge_features) edge inputs.
        """
        src, dst = edge_index[0], edge_index[1]
        n_nodes = x.shape[0]

        h = h_enc = self.node_encoder(x)
        e = e_enc = self.edge_encoder(edge_attr)
        g = h.new_zeros(1, h.shape[1])  # g⁰ = 0

        # Terms of the encoded inputs in the first layers: the same at every step.
        edge_const = self.edge_mlp.project(e_enc, 3) + self.edge_mlp.bias
        node_const = self.node_mlp.project(h_enc, 1) + self.node_mlp.bias

        for _ in range(self.steps):
            # e_jk ← MLP_e([h_j, h_k, e_jk, e_enc,jk])
            pre = self.edge_mlp.project(e, 2, add=edge_const)
            pre += self.edge_mlp.project(h, 0).index_select(0, src)  # W_src h, gathered
            pre += self.edge_mlp.project(h, 1).index_select(0, dst)  # W_dst h, gathered
            e = self.edge_mlp.finish(pre)
            # h_k ← MLP_v([h_k, h_enc,k, Σ_{j→k} e_jk])
            # (summed in float32 also under bf16 autocast)
            acc = torch.float32 if e.dtype in (torch.float16, torch.bfloat16) else e.dtype
            incoming = e.new_zeros(n_nodes, e.shape[1], dtype=acc).index_add_(0, dst, e.to(acc))
            pre = self.node_mlp.project(h, 0, add=node_const)
            pre = self.node_mlp.project(incoming, 2, add=pre)
            h = self.node_mlp.finish(pre)
            # g^m = MLP_g([g^{m−1}, (1/N) Σ_v h_v^m])  (never fed back)
            g = self.global_mlp(g, h.mean(dim=0, keepdim=True))

        return TBotanOutput(
            cb=self.node_decoder(h).squeeze(-1),
            edge=self.edge_decoder(e).squeeze(-1),
            t_pred=self.global_decoder(g).reshape(()),
            embedding=g.reshape(-1),
        )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
