"""T-BOTAN: BOTAN's interaction network with a global branch (docs/physics.md §7, paper Sec. II B).

Encode–process–decode on one configuration's graph (N nodes, E directed edges), hidden size H:

* encoders: ``h⁰ = h_enc = MLP_n(x)`` (species one-hot → H), ``e⁰ = e_enc = MLP_ε(edge features)``;
* ``M`` message-passing steps with one shared edge MLP and one shared node MLP (BOTAN)::

      e_jk ← MLP_e([h_j, h_k, e_jk, e_enc,jk])           for every edge j → k
      h_k  ← MLP_v([h_k, h_enc,k, Σ_{j→k} e_jk])          sum over the edges entering k

* the global branch of the paper's Eq. (3), never fed back into nodes or edges::

      g⁰ = 0 ∈ R^H,   g^m = MLP_g([g^{m−1}, (1/N) Σ_v h_v^m]),   m = 1..M

* three separate decoders: node → C_B, edge → E_jk, global → T_pred (paper Eq. 4).  ``g^M``
  (before its decoder) is the global embedding of the paper's Fig. 5.

Two additions of ours, both off in the paper's exact form (docs/physics.md §7):

* **Standardisation** (buffers, stored with the weights): edge inputs enter as
  ``(edge_attr − edge_shift) / edge_scale`` and every decoder output is ``shift + scale · raw``
  for its target (C_B, E_jk, T), with shifts/scales from the training set
  (:meth:`TBotan.set_standardization`).  With shift 0 and scale 1 (the default) this is the
  paper's network; with training statistics the decoders start at the target means and the
  losses see targets of unit size.  It is a reparameterisation: the same functions are
  reachable either way (tested).
* **Global readout** (``global_readout``): ``"paper"`` feeds ``(1/N) Σ_v h_v^m`` to MLP_g as
  written; ``"standardized"`` first standardises the pooled vector of each step per feature,
  ``p̃^m = (p^m − μ^m) / σ^m``, with running means and variances over training graphs
  (exponential moving average, momentum ``global_momentum``, initialised from data by
  :meth:`TBotan.calibrate_global`).  The temperature-dependent part of ``p^m`` is a fraction of
  a percent of its size, so the paper's readout starts blind to it; the standardised one sees
  it at unit size, as a linear probe on centred features does.

Several graphs are processed at once with a PyG-style ``batch`` vector (node → graph index):
pooling is per graph, and the outputs ``t_pred`` and ``embedding`` gain a leading graph axis.

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
    """Predictions for one configuration (or a batch of B graphs).

    Attributes:
        cb: (N,) predicted C_B (all nodes of the batch).
        edge: (E,) predicted edge labels E_jk (σ_AA).
        t_pred: () predicted temperature; (B,) for a batch.
        embedding: (H,) global embedding g^M (before the global decoder); (B, H) for a batch.
    """

    cb: torch.Tensor
    edge: torch.Tensor
    t_pred: torch.Tensor
    embedding: torch.Tensor


#: Global readouts (``model.global_readout``): the paper's Eq. (3) as written, or with the pooled
#: vector standardised by running statistics (see the module documentation).
GLOBAL_READOUTS = ("paper", "standardized")

#: Order of the targets in the ``target_shift`` / ``target_scale`` buffers.
TARGETS = ("cb", "edge", "t")


class TBotan(nn.Module):
    """T-BOTAN (see the module documentation for the equations).

    Args:
        edge_features: F, number of edge input features (4 for ``is+ts``, 3 otherwise).
        node_features: number of node input features (2: one-hot species).
        hidden: H, width of every latent vector and hidden layer (64).
        mlp_layers: hidden layers per MLP (2).
        message_passing_steps: M (7).
        global_readout: ``"paper"`` or ``"standardized"`` (:data:`GLOBAL_READOUTS`).
        global_momentum: momentum of the running pooled-vector statistics (``standardized``).

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
        global_readout: str = "paper",
        global_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if global_readout not in GLOBAL_READOUTS:
            raise ValueError(
                f"unknown global readout {global_readout!r}; choose one of {GLOBAL_READOUTS}"
            )
        self.hparams = dict(
            edge_features=int(edge_features),
            node_features=int(node_features),
            hidden=int(hidden),
            mlp_layers=int(mlp_layers),
            message_passing_steps=int(message_passing_steps),
            global_readout=str(global_readout),
            global_momentum=float(global_momentum),
        )
        H, L = hidden, mlp_layers
        self.steps = message_passing_steps
        self.global_readout = global_readout
        self.global_momentum = float(global_momentum)
        self.node_encoder = MLP(node_features, H, L)
        self.edge_encoder = MLP(edge_features, H, L)
        self.edge_mlp = MLP((H, H, H, H), H, L)  # [h_src, h_dst, e, e_enc]
        self.node_mlp = MLP((H, H, H), H, L)  # [h, h_enc, Σ incoming e]
        self.global_mlp = MLP((H, H), H, L)  # [g^{m-1}, mean_v h]
        self.node_decoder = MLP(H, H, L, out=1)
        self.edge_decoder = MLP(H, H, L, out=1)
        self.global_decoder = MLP(H, H, L, out=1)
        self.register_buffer("edge_shift", torch.zeros(edge_features))
        self.register_buffer("edge_scale", torch.ones(edge_features))
        self.register_buffer("target_shift", torch.zeros(len(TARGETS)))
        self.register_buffer("target_scale", torch.ones(len(TARGETS)))
        if global_readout == "standardized":
            self.register_buffer("pool_mean", torch.zeros(message_passing_steps, H))
            self.register_buffer("pool_var", torch.ones(message_passing_steps, H))

    @classmethod
    def from_config(cls, config: dict, variant: str | None = None) -> TBotan:
        """The model of a configuration's ``model`` section (variant: its own by default)."""
        from tbotan.learning.graphs import EDGE_FEATURES, NODE_FEATURES, check_variant

        m = config["model"]
        variant = check_variant(variant or m["variant"])
        return cls(
            edge_features=EDGE_FEATURES[variant],
            node_features=NODE_FEATURES,
            hidden=m["hidden"],
            mlp_layers=m["mlp_layers"],
            message_passing_steps=m["message_passing_steps"],
            global_readout=m.get("global_readout", "paper"),
            global_momentum=m.get("global_momentum", 0.01),
        )

    # ------------------------------------------------------------ standardisation
    @torch.no_grad()
    def set_standardization(
        self,
        edge_shift: Sequence[float] | torch.Tensor,
        edge_scale: Sequence[float] | torch.Tensor,
        target_shift: Sequence[float] | torch.Tensor,
        target_scale: Sequence[float] | torch.Tensor,
    ) -> None:
        """Set the input and target standardisation (see the module documentation).

        Args:
            edge_shift, edge_scale: (F,) per edge feature (scales > 0).
            target_shift, target_scale: (3,) for C_B, E_jk and T (:data:`TARGETS`; scales > 0).
        """
        for name, value in (
            ("edge_shift", edge_shift),
            ("edge_scale", edge_scale),
            ("target_shift", target_shift),
            ("target_scale", target_scale),
        ):
            buffer = getattr(self, name)
            value = torch.as_tensor(value, dtype=buffer.dtype, device=buffer.device)
            if value.shape != buffer.shape:
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)}, expected {tuple(buffer.shape)}"
                )
            if not torch.all(torch.isfinite(value)):
                raise ValueError(f"{name} is not finite: {value.tolist()}")
            if name.endswith("scale") and not torch.all(value > 0):
                raise ValueError(f"{name} must be positive: {value.tolist()}")
            buffer.copy_(value)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`torch.nn.Module.load_state_dict`; files written before the standardisation
        buffers existed load with the identity standardisation (the paper's network)."""
        state_dict = dict(state_dict)
        for name in ("edge_shift", "edge_scale", "target_shift", "target_scale"):
            state_dict.setdefault(name, getattr(self, name).detach().clone())
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def calibrate_global(self, graphs) -> None:
        """Initialise the running pooled-vector statistics from graphs (``standardized``).

        Args:
            graphs: iterable of ``(x, edge_index, edge_attr)`` of training configurations; the
                pooled vectors of every step are collected with the current weights and their
                mean and variance over graphs become the running statistics.
        """
        if self.global_readout != "standardized":
            return
        was_training = self.training
        self.eval()
        pooled = []
        for x, edge_index, edge_attr in graphs:
            pooled.append(self.pooled_states(x, edge_index, edge_attr))
        self.train(was_training)
        if not pooled:
            raise ValueError("calibrate_global needs at least one graph")
        self.set_global_statistics(torch.cat(pooled, dim=1))

    @torch.no_grad()
    def set_global_statistics(self, pooled: torch.Tensor) -> None:
        """The running pooled-vector statistics from pooled vectors (M, G, H) of G graphs:
        their mean and variance over graphs (variance 1 for a single graph)."""
        if self.global_readout != "standardized":
            return
        self.pool_mean.copy_(pooled.mean(dim=1))
        self.pool_var.copy_(
            pooled.var(dim=1, correction=0)
            if pooled.shape[1] > 1
            else torch.ones_like(self.pool_mean)
        )

    def global_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """T_pred (B,) from the pooled node states of every step, in physical units.

        The global chain g^m = MLP_g([g^{m−1}, pooled^m]) never feeds back into the node and
        edge updates, so T_pred depends on the trunk only through these pooled vectors.

        Args:
            pooled: (M, B, H) mean-pooled node states of each message-passing step, as
                :meth:`pooled_states` returns them.

        Returns:
            (B,) T_pred, the same as :meth:`forward`'s ``t_pred`` for those graphs (the running
            statistics of the standardised readout are updated only in training mode).
        """
        g = pooled.new_zeros(pooled.shape[1], pooled.shape[2])  # g⁰ = 0
        for step in range(self.steps):
            g = self.global_mlp(g, self._readout_input(pooled[step], step))
        return _decode(self.global_decoder, g) * self.target_scale[2] + self.target_shift[2]

    def _readout_input(self, pooled: torch.Tensor, step: int) -> torch.Tensor:
        """The pooled vector (B, H) as MLP_g sees it at message-passing step ``step``."""
        if self.global_readout == "paper":
            return pooled
        if self.training:
            with (
                torch.no_grad()
            ):  # running statistics in the buffers' dtype (float32 under autocast)
                m = self.global_momentum
                stats = pooled.detach().to(self.pool_mean.dtype)
                self.pool_mean[step].lerp_(stats.mean(dim=0), m)
                deviation = (stats - self.pool_mean[step]).square().mean(dim=0)
                self.pool_var[step].lerp_(deviation, m)
        return (pooled - self.pool_mean[step]) * torch.rsqrt(self.pool_var[step] + 1e-12)

    # ------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
        num_graphs: int | None = None,
    ) -> TBotanOutput:
        """Predictions for one graph, or for a batch of graphs.

        Args:
            x: (N, node_features) node inputs (one-hot species).
            edge_index: (2, E) int64 edges (source j, target k).
            edge_attr: (E, edge_features) edge inputs, in physical units.
            batch: (N,) int64 graph index of every node (sorted or not), or None for one graph.
            num_graphs: B, the number of graphs of ``batch`` (default ``batch.max() + 1``).

        Returns:
            :class:`TBotanOutput` in physical units; ``t_pred`` () and ``embedding`` (H,) for
            one graph, (B,) and (B, H) with ``batch``.
        """
        h, e, g, _ = self._trunk(x, edge_index, edge_attr, batch, num_graphs)
        shift, scale = self.target_shift, self.target_scale
        t_pred = _decode(self.global_decoder, g) * scale[2] + shift[2]
        return TBotanOutput(
            cb=_decode(self.node_decoder, h) * scale[0] + shift[0],
            edge=_decode(self.edge_decoder, e) * scale[1] + shift[1],
            t_pred=t_pred.reshape(()) if batch is None else t_pred,
            embedding=g.reshape(-1) if batch is None else g,
        )

    def pooled_states(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
        num_graphs: int | None = None,
    ) -> torch.Tensor:
        """The mean-pooled node states of every message-passing step: what the global head
        (:meth:`global_head`) reads of the trunk.

        Args: as :meth:`forward`.

        Returns:
            (M, B, H) pooled vectors (1/N) Σ_v h_v^m of each step m and graph (B = 1 without
            ``batch``), in the model's internal units; ``global_head`` of them is ``forward``'s
            ``t_pred``.  In training mode the running statistics of a standardised readout are
            updated, as by ``forward``.
        """
        return torch.stack(self._trunk(x, edge_index, edge_attr, batch, num_graphs)[3])

    def _trunk(self, x, edge_index, edge_attr, batch, num_graphs):
        """Encoders and the M steps: h (N, H), e (E, H), g (B, H) and the pooled vectors of
        every step (a list of M (B, H))."""
        if batch is not None and num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        num_graphs = num_graphs or 1
        src, dst = edge_index[0], edge_index[1]
        n_nodes = x.shape[0]
        edge_attr = (edge_attr - self.edge_shift.to(edge_attr.dtype)) / self.edge_scale.to(
            edge_attr.dtype
        )

        h = h_enc = self.node_encoder(x)
        e = e_enc = self.edge_encoder(edge_attr)
        g = h.new_zeros(num_graphs, h.shape[1])  # g⁰ = 0
        if batch is not None:
            counts = torch.bincount(batch, minlength=num_graphs).clamp_(min=1).to(h.dtype)
        pooled_per_step = []

        # Terms of the encoded inputs in the first layers: the same at every step.
        edge_const = self.edge_mlp.project(e_enc, 3) + self.edge_mlp.bias
        node_const = self.node_mlp.project(h_enc, 1) + self.node_mlp.bias

        for step in range(self.steps):
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
            # g^m = MLP_g([g^{m−1}, (1/N) Σ_v h_v^m])  (never fed back), per graph
            if batch is None:
                pooled = h.mean(dim=0, keepdim=True)
            else:
                pooled = h.new_zeros(num_graphs, h.shape[1]).index_add_(0, batch, h)
                pooled = pooled / counts[:, None]
            pooled_per_step.append(pooled)
            g = self.global_mlp(g, self._readout_input(pooled, step))
        return h, e, g, pooled_per_step


def _decode(decoder: MLP, z: torch.Tensor) -> torch.Tensor:
    """A decoder's (...,) output, in float32 also under bf16/fp16 autocast (a bf16 C_B would
    be quantised to ≈ 0.004, a tenth of its spread)."""
    if z.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(z.device.type):
        with torch.autocast(device_type=z.device.type, enabled=False):
            return decoder(z.float()).squeeze(-1)
    return decoder(z).squeeze(-1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
