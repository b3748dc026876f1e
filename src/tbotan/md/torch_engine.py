"""The batched PyTorch molecular-dynamics engine (CPU and CUDA).

:class:`TorchEngine` advances B independent KALJ systems of N particles in one set of tensor
operations: dense Verlet neighbour lists (:mod:`tbotan.md.torch_neighbors`), shifted-force
pair forces (:mod:`tbotan.md.torch_potential`), velocity Verlet with optional Bussi thermostat
and FIRE (:mod:`tbotan.md.torch_integrators`).  Every system has its own box, thermostat
temperature and random stream; a system gives the same trajectory alone and inside a batch.

Example::

    from tbotan.md import DynamicsParameters, make_engine
    engine = make_engine("torch", device="cpu", kernels="native")
    sim = engine.simulation(batch, DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=1))
    sim.run(10_000)
    print(sim.thermo().potential_energy_per_particle)

Blow-ups (non-finite coordinates, overlapping particles, runaway energy or temperature) stop
the run with a :class:`~tbotan.md.SimulationError` that names the system, the step and the
reason.
"""

from __future__ import annotations

import numpy as np
import torch

from tbotan.devices import resolve_device
from tbotan.errors import ConfigError
from tbotan.md import (
    MAX_POTENTIAL_ENERGY,
    MAX_TEMPERATURE,
    MIN_DISTANCE,
    BatchEvaluation,
    DynamicsParameters,
    Engine,
    FireParameters,
    MinimizeResult,
    Simulation,
    SimulationError,
    Thermo,
    blowup_error,
    degrees_of_freedom,
    kinetic_temperature,
)
from tbotan.md import torch_integrators as integ
from tbotan.md import torch_neighbors as nl
from tbotan.md.engine_common import require_velocities, set_limits
from tbotan.md.torch_kernels import make_kernels
from tbotan.md.torch_thermostats import THERMOSTATS, make_thermostat
from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch

PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


class TorchEngine(Engine):
    """Batched KALJ engine in PyTorch.

    Args:
        device: ``'auto'``, ``'cpu'`` or ``'cuda'`` (or ``'cuda:1'``…).
        precision: ``'float64'`` (default; needed for FIRE to 1e-12) or ``'float32'``.
        kernels: ``'auto'`` (native C++ kernels on CPU, ``torch.compile`` on CUDA),
            ``'native'``, ``'compiled'`` or ``'eager'`` (plain torch, no compilation).
        cuda_graphs: with compiled kernels on CUDA, capture them as CUDA graphs
            (``mode='reduce-overhead'``).
        skin: neighbour-list skin (σ_AA); lists are rebuilt per system when a particle of that
            system has moved more than ``skin/2``.
        check_interval: steps between blow-up checks.
        max_potential_energy: U/N above which a system counts as blown up (ε_AA).
        max_temperature: kinetic temperature above which a system counts as blown up
            (ε_AA/k_B; the kinetic temperature of :func:`tbotan.md.kinetic_temperature`).
        min_distance: smallest allowed ``r_ij / σ_μν`` (dimensionless); closer pairs count as
            overlapping.
        verify_neighbors: at every blow-up check, also compare the neighbour list with a
            brute-force O(N²) search and fail if a pair inside its cut-off is missing (a
            debugging and testing aid; slow for large N).
        neighbor_list: ``'auto'`` (half lists with the native kernels, full lists with the
            torch kernels), ``'half'`` (each pair once, Newton's third law; native kernels
            only) or ``'full'``.  Both give the same physics; results differ at rounding.
    """

    name = "torch"

    @property
    def thermostats(self) -> tuple[str, ...]:
        """The registered thermostats (:data:`tbotan.md.torch_thermostats.THERMOSTATS`)."""
        return tuple(THERMOSTATS)

    def __init__(
        self,
        device: str = "auto",
        precision: str = "float64",
        kernels: str = "auto",
        cuda_graphs: bool = False,
        skin: float = 0.3,
        check_interval: int = 100,
        max_potential_energy: float = MAX_POTENTIAL_ENERGY,
        max_temperature: float = MAX_TEMPERATURE,
        min_distance: float = MIN_DISTANCE,
        verify_neighbors: bool = False,
        neighbor_list: str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if check_interval < 1:
            raise ConfigError(f"check_interval must be ≥ 1, got {check_interval}")
        self.radii = nl.ListRadii.create(skin)
        set_limits(self, skin, max_potential_energy, max_temperature, min_distance)
        self.device = resolve_device(device)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.check_interval = int(check_interval)
        self.verify_neighbors = bool(verify_neighbors)
        self.kernels, self.coeff = make_kernels(
            kernels,
            self.device,
            self.dtype,
            bool(cuda_graphs) and self.device.type == "cuda",
            neighbor_list,
        )

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "torch_version": torch.__version__,
            "device": str(self.device),
            "precision": self.precision,
            "kernels": self.kernels.name,
            "neighbor_list": self.kernels.neighbor_list,
            "skin": self.radii.skin,
        }

    # ------------------------------------------------------------------ public API
    def evaluate(self, configurations: ConfigurationBatch) -> BatchEvaluation:
        state = _State.create(self, configurations, need_velocities=False)
        f, energy, virial, _ = state.energy_check()
        return BatchEvaluation(
            per_particle_energy=energy.double().cpu().numpy(),
            forces=f.permute(1, 2, 0).double().cpu().numpy(),
            virial=virial.double().cpu().numpy(),
        )

    def simulation(
        self, configurations: ConfigurationBatch, integrator: DynamicsParameters
    ) -> TorchSimulation:
        self.check_integrator(integrator)
        return TorchSimulation(self, configurations, integrator)

    def minimize(
        self, configurations: ConfigurationBatch, fire: FireParameters | None = None
    ) -> MinimizeResult:
        return _minimize_fire(self, configurations, fire or FireParameters())


def canonical(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the canonical contiguous strides of its shape (a fresh copy if needed).

    ``.contiguous()`` keeps odd strides of size-1 dimensions (e.g. the zero stride of a
    broadcast batch of one), and ``torch.compile(dynamic=False)`` guards on strides: one more
    compilation for the same shapes.  Canonical strides avoid it."""
    expected, step = [], 1
    for size in reversed(t.shape):
        expected.append(step)
        step *= max(size, 1)
    if t.is_contiguous() and tuple(reversed(expected)) == t.stride():
        return t
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)


class _State:
    """Device-side state of a batch: coordinates, velocities, forces and neighbour lists."""

    def __init__(self) -> None:
        self.engine: TorchEngine
        self.coords: torch.Tensor  # (3, B, N)
        self.velocities: torch.Tensor  # (3, B, N)
        self.forces: torch.Tensor  # (3, B, N)
        self.images: torch.Tensor  # (3, B, N) int64
        self.types: torch.Tensor  # (B, N) int64
        self.box: torch.Tensor  # (B, 3)
        self.host_box: np.ndarray  # (B, 3) float64 copy of box on the host
        self.reference: torch.Tensor  # (3, B, N) coordinates at the last list build
        self.neighbors: torch.Tensor  # (B, N, K) int64; int32 for half lists
        self.counts: torch.Tensor  # (B, N) valid entries per row; (B, N, 2) [n, n_A] half lists
        self.timestep: np.ndarray  # (B,) int64
        self.capacity: int

    @staticmethod
    def create(engine: TorchEngine, conf: ConfigurationBatch, need_velocities: bool) -> _State:
        if not isinstance(conf, ConfigurationBatch):
            raise TypeError(f"expected a ConfigurationBatch, got {type(conf).__name__}")
        if need_velocities:
            require_velocities(conf)
        s = _State()
        s.engine = engine
        dev, dt = engine.device, engine.dtype

        def soa(array, dtype):
            # always a fresh copy: the kernels update coordinates in place
            component_major = np.ascontiguousarray(np.moveaxis(array, 2, 0))
            return torch.tensor(component_major, device=dev, dtype=dtype)

        s.coords = soa(conf.positions, dt)
        s.images = soa(conf.images, torch.int64)
        vel = conf.velocities if conf.velocities is not None else np.zeros_like(conf.positions)
        s.velocities = soa(vel, dt)
        s.types = canonical(torch.as_tensor(conf.types, device=dev).to(torch.int64))
        s.box = canonical(torch.as_tensor(conf.box, device=dev).to(dt))
        s.host_box = np.asarray(conf.box, dtype=np.float64).reshape(-1, 3)
        s.timestep = conf.timestep.copy()
        density = float(np.mean(conf.n_particles / conf.volume))
        half = engine.kernels.neighbor_list == "half"
        s.capacity = nl.default_capacity(density, engine.radii, half=half)
        s.rebuild(None)
        s._check_overlaps(context="in the initial configuration")
        s.compute_forces()
        return s

    @property
    def n_systems(self) -> int:
        return self.types.shape[0]

    def compute_forces(self) -> torch.Tensor:
        self.forces = self.engine.kernels.forces(
            self.coords, self.neighbors, self.counts, self.types, self.box
        )
        return self.forces

    def verlet_step(self, dt: torch.Tensor, half_skin_sq: float) -> torch.Tensor | None:
        """One velocity-Verlet step of every system with its own (B,) time step ``dt`` (0
        freezes a system): half kick and drift, the neighbour-list check (systems that moved
        more than half the skin are rebuilt), forces, half kick.  The one step of both the
        dynamics (:class:`TorchSimulation`) and FIRE (:func:`_minimize_fire`).

        Returns the (B,) kinetic energies Σ v²/2 (ε, unit masses) after the step where the
        kernels fuse them with the kick (native), else None (the thermostat computes them)."""
        kern = self.engine.kernels
        self.coords, self.velocities, moved = kern.kick_drift_check(
            self.coords, self.velocities, self.forces, self.reference, dt, half_skin_sq
        )
        if not bool(moved.any()):
            self.compute_forces()
        elif kern.rebuilds_in_place:
            # native half lists: the flagged systems' rebuilds and every system's forces in one
            # call, one task per system
            self.forces, longest = kern.rebuild_forces(
                self.coords,
                self.images,
                self.reference,
                self.types,
                self.box,
                moved,
                self.neighbors,
                self.counts,
                self.engine.radii,
            )
            if self._after_rebuild_in_place(longest):
                self.compute_forces()  # the lists were widened and rebuilt
        else:
            self.rebuild(moved)
            self.compute_forces()
        self.velocities, kinetic = kern.kick(self.velocities, self.forces, dt)
        return kinetic

    def energy_check(self):
        """Forces, per-particle energies (B, N), virial (B,), min r/σ (B,) of the coordinates."""
        return self.engine.kernels.energy_virial(
            self.coords, self.neighbors, self.counts, self.types, self.box
        )

    def rebuild(self, systems: torch.Tensor | None) -> None:
        """Wrap and rebuild the neighbour lists of ``systems`` (bool (B,) mask; None = all)."""
        kern = self.engine.kernels
        if systems is not None and kern.rebuilds_in_place:
            # native half lists: wrap, reference and rows of the flagged systems in place
            longest = kern.rebuild_in_place(
                self.coords,
                self.images,
                self.reference,
                self.types,
                self.box,
                systems,
                self.neighbors,
                self.counts,
                self.engine.radii,
            )
            self._after_rebuild_in_place(longest)
            return
        if systems is None:
            idx = torch.arange(self.n_systems, device=self.coords.device)
        else:
            idx = torch.nonzero(systems).flatten()
        coords = self.coords[:, idx]
        finite = torch.isfinite(coords).all(dim=2).all(dim=0)
        if not bool(finite.all()):
            b = int(idx[~finite][0])
            raise blowup_error(
                b,
                int(self.timestep[b]),
                "non-finite coordinates (NaN/inf); reduce dt or check the starting configuration",
            )
        wrapped, shift = nl.wrap(coords, self.box[idx])
        self.coords[:, idx] = wrapped
        self.images[:, idx] += shift
        if systems is None:
            self.reference = self.coords.clone()
        else:
            self.reference[:, idx] = wrapped
        neighbors, counts = self.engine.kernels.build(
            wrapped.contiguous(),
            canonical(self.types[idx]),
            canonical(self.box[idx]),
            self.engine.radii,
            self.capacity,
            host_box=self.host_box[idx.cpu().numpy()],
        )
        longest = int(counts.max())
        if longest > self.capacity:
            # a row overflowed: widen every system's list (same layout for the whole batch)
            self.capacity = nl.round_capacity(1.2 * longest)
            self.rebuild(None)
            return
        # flat indices are relative to the sub-batch: shift them to the full batch
        n = self.types.shape[1]
        offset = (idx - torch.arange(idx.numel(), device=idx.device)) * n
        neighbors = neighbors + offset.view(-1, 1, 1).to(neighbors.dtype)  # int32 half lists
        if systems is None:
            self.neighbors, self.counts = neighbors.contiguous(), counts.contiguous()
        else:
            self.neighbors[idx] = neighbors
            self.counts[idx] = counts

    def _after_rebuild_in_place(self, longest: torch.Tensor) -> bool:
        """Check the (B,) longest rows of an in-place rebuild: raise for a system with
        non-finite coordinates (-1); where a row overflowed, widen every system's list and
        rebuild them all.  Returns True if it rebuilt them all (forces must be recomputed)."""
        bad = torch.nonzero(longest < 0).flatten()
        if bad.numel():
            b = int(bad[0])
            raise SimulationError(
                f"system {b} blew up at step {int(self.timestep[b])}: non-finite coordinates "
                "(NaN/inf); reduce dt or check the starting configuration"
            )
        worst = int(longest.max())
        if worst > self.capacity:
            self.capacity = nl.round_capacity(1.2 * worst)
            self.rebuild(None)
            return True
        return False

    def _check_overlaps(self, context: str) -> None:
        _, _, _, min_ratio = self.energy_check()
        bad = torch.nonzero(min_ratio < self.engine.min_distance).flatten()
        if bad.numel():
            b = int(bad[0])
            raise SimulationError(
                f"system {b} {context}: particles overlap (closest pair at "
                f"{float(min_ratio[b]):.3f} σ_μν < min_distance {self.engine.min_distance}); "
                f"{_closest_pair_text(self, b)}"
            )

    def missing_pairs(self, row_block: int = 1024) -> torch.Tensor:
        """(B,) number of pairs inside their cut-off that the neighbour list lacks (O(N²)).

        Works one system and ``row_block`` rows at a time: memory O(N · row_block), never the
        (B N)² of a dense pair matrix.  A half list (counts (B, N, 2)) holds each pair once, in
        either particle's row; a pair counts as listed if it is in i's row or j's.
        """
        n_sys, n = self.types.shape
        dev = self.coords.device
        k = self.neighbors.shape[-1]
        half = self.counts.dim() == 3
        n_valid = self.counts[..., 0] if half else self.counts
        valid = torch.arange(k, device=dev).view(1, 1, k) < n_valid.clamp(max=k).unsqueeze(-1)
        missing = torch.zeros(n_sys, dtype=torch.int64, device=dev)
        cut_sq = self.engine.coeff.r_cut_sq
        for b in range(n_sys):
            # listed pairs of system b as sorted keys i * n + j (both orders for half lists)
            rows = torch.arange(n, device=dev)[:, None].expand(-1, k)[valid[b]]
            cols = self.neighbors[b][valid[b]].to(torch.int64) - b * n  # int32 half lists
            keys = rows * n + cols
            if half:
                keys = torch.cat([keys, cols * n + rows])
            keys = torch.unique(keys)
            x = self.coords[:, b].t()
            types = self.types[b]
            for first in range(0, n, row_block):
                i = torch.arange(first, min(first + row_block, n), device=dev)
                d = x[i, None, :] - x[None, :, :]
                d = d - self.box[b] * torch.round(d / self.box[b])
                pair = 2 * types[i][:, None] + types[None, :]
                inside = (d * d).sum(-1) < cut_sq[pair]
                inside[torch.arange(i.numel(), device=dev), i] = False
                ii, jj = torch.nonzero(inside, as_tuple=True)
                wanted = (ii + first) * n + jj
                if keys.numel() == 0:
                    missing[b] += wanted.numel()
                    continue
                pos = torch.searchsorted(keys, wanted).clamp(max=keys.numel() - 1)
                missing[b] += (keys[pos] != wanted).sum()
        return missing

    def check_blowup(self) -> None:
        """Raise SimulationError naming the first system that blew up."""
        if self.engine.verify_neighbors:
            missing = self.missing_pairs()
            if bool((missing > 0).any()):
                b = int(torch.nonzero(missing)[0])
                raise SimulationError(
                    f"system {b} at step {int(self.timestep[b])}: the neighbour list misses "
                    f"{int(missing[b])} pairs inside the cut-off"
                )
        _, energy, _, min_ratio = self.energy_check()
        n = self.types.shape[1]
        u = energy.sum(-1) / n
        temperature = kinetic_temperature(2.0 * integ.kinetic_energy(self.velocities), n)
        finite = torch.isfinite(self.coords).all(0).all(-1)
        finite &= torch.isfinite(self.velocities).all(0).all(-1)
        reasons = [
            (~finite, lambda b: "non-finite coordinates or velocities (NaN/inf)"),
            (
                min_ratio < self.engine.min_distance,
                lambda b: (
                    f"overlapping particles (closest pair at {float(min_ratio[b]):.3f} "
                    f"σ_μν); " + _closest_pair_text(self, b)
                ),
            ),
            (
                u > self.engine.max_potential_energy,
                lambda b: (
                    f"potential energy exploded (U/N = {float(u[b]):.4g} > "
                    f"{self.engine.max_potential_energy})"
                ),
            ),
            (
                temperature > self.engine.max_temperature,
                lambda b: (
                    f"kinetic temperature exploded (T = {float(temperature[b]):.4g} > "
                    f"{self.engine.max_temperature})"
                ),
            ),
        ]
        for mask, text in reasons:
            bad = torch.nonzero(mask).flatten()
            if bad.numel():
                b = int(bad[0])
                raise blowup_error(b, int(self.timestep[b]), text(b))

    def to_configurations(self) -> ConfigurationBatch:
        wrapped, shift = nl.wrap(self.coords, self.box)
        return ConfigurationBatch(
            positions=wrapped.permute(1, 2, 0).double().cpu().numpy(),
            types=self.types.to(torch.int8).cpu().numpy(),
            box=self.box.double().cpu().numpy(),
            images=(self.images + shift).permute(1, 2, 0).cpu().numpy(),
            velocities=self.velocities.permute(1, 2, 0).double().cpu().numpy(),
            timestep=self.timestep.copy(),
        )


def _closest_pair_text(state: _State, b: int) -> str:
    """Name the closest pair of system b (found with the NumPy reference search)."""
    x = state.coords[:, b].t().double().cpu().numpy()
    box = state.box[b].double().cpu().numpy()
    types = state.types[b].cpu().numpy()
    i, j = kalj.neighbor_pairs(x, box, 1.0)
    if i.size == 0:
        return "no pair closer than 1 σ_AA found"
    d = kalj.minimum_image(x[i] - x[j], box)
    ratio = np.sqrt((d * d).sum(1)) / kalj.SIGMA[types[i], types[j]]
    k = int(np.argmin(ratio))
    return f"particles {int(i[k])} and {int(j[k])} are {ratio[k]:.3f} σ_μν apart"


class TorchSimulation(Simulation):
    """A batch being integrated by :class:`TorchEngine` (see :class:`tbotan.md.Simulation`).

    Each step is velocity Verlet (``_State.verlet_step``, shared with FIRE) followed by the
    integrator's thermostat, if any (:mod:`tbotan.md.torch_thermostats`).
    """

    def __init__(
        self, engine: TorchEngine, conf: ConfigurationBatch, integrator: DynamicsParameters
    ):
        self.engine = engine
        self.integrator = integrator
        self._state = _State.create(engine, conf, need_velocities=True)
        b = self._state.n_systems
        self._dt = torch.full((b,), integrator.dt, device=engine.device, dtype=engine.dtype)
        self._thermostat = make_thermostat(
            integrator,
            b,
            conf.n_particles,
            engine.device,
            rescale=getattr(engine.kernels, "scale_velocities", None),
        )
        self._dof = float(degrees_of_freedom(conf.n_particles))
        self._half_skin_sq = (0.5 * engine.radii.skin) ** 2

    @property
    def timestep(self) -> np.ndarray:
        return self._state.timestep.copy()

    def run(self, n_steps: int) -> None:
        if n_steps < 0:
            raise ValueError(f"n_steps must be ≥ 0, got {n_steps}")
        s = self._state
        s.rebuild(None)  # a run is a pure function of the state at its start
        s.compute_forces()
        thermostat = self._thermostat
        if thermostat is not None:
            thermostat.begin_run(n_steps)
        for step in range(n_steps):
            kinetic = s.verlet_step(self._dt, self._half_skin_sq)
            s.timestep += 1
            if thermostat is not None:
                s.velocities = thermostat.apply(s.velocities, step, s.timestep, kinetic)
            if (step + 1) % self.engine.check_interval == 0:
                s.check_blowup()
        s.check_blowup()

    def state(self) -> ConfigurationBatch:
        return self._state.to_configurations()

    def thermo(self) -> Thermo:
        s = self._state
        _, energy, virial, _ = s.energy_check()
        n = s.types.shape[1]
        kinetic = integ.kinetic_energy(s.velocities).double()
        volume = s.box.double().prod(-1)
        return Thermo(
            potential_energy_per_particle=(energy.double().sum(-1) / n).cpu().numpy(),
            kinetic_energy_per_particle=(kinetic / n).cpu().numpy(),
            temperature=(2.0 * kinetic / self._dof).cpu().numpy(),
            pressure=((2.0 * kinetic + virial.double()) / (3.0 * volume)).cpu().numpy(),
        )


def _minimize_fire(
    engine: TorchEngine, conf: ConfigurationBatch, fire: FireParameters
) -> MinimizeResult:
    """Batched FIRE with HOOMD-blue's semantics (see :class:`tbotan.md.FireParameters`).

    Systems that have converged stop moving (their time step is set to zero) while the others
    continue; every system's step count is its own.
    """
    if engine.dtype != torch.float64 and fire.force_tolerance < 1e-6:
        raise ConfigError(
            f"FIRE to mean |F| < {fire.force_tolerance:g} needs precision 'float64' "
            f"(the engine runs in {engine.precision})"
        )
    s = _State.create(engine, conf.with_velocities(None), need_velocities=False)
    b = s.n_systems
    dev, dtype = engine.device, engine.dtype
    s.velocities = torch.zeros_like(s.coords)
    dt = torch.full((b,), fire.initial_dt, device=dev, dtype=dtype)
    alpha = torch.full((b,), fire.alpha_start, device=dev, dtype=dtype)
    since_negative = torch.full((b,), fire.n_min + 1, device=dev, dtype=torch.int64)
    steps = torch.zeros(b, device=dev, dtype=torch.int64)
    active = torch.ones(b, device=dev, dtype=torch.bool)
    mean_force = torch.full((b,), torch.inf, device=dev, dtype=dtype)
    half_skin_sq = (0.5 * engine.radii.skin) ** 2

    for iteration in range(fire.max_steps):
        s.timestep = conf.timestep + iteration  # for error messages: the FIRE step
        s.verlet_step(torch.where(active, dt, torch.zeros_like(dt)), half_skin_sq)
        steps += active.to(torch.int64)
        f_mag = torch.sqrt((s.forces * s.forces).sum(0)).mean(-1)
        mean_force = torch.where(active, f_mag, mean_force)
        # HOOMD-blue checks convergence after the step and before mixing
        converged = active & (f_mag < fire.force_tolerance) & (steps > fire.min_steps)
        active = active & ~converged
        mixed, power = integ.fire_mix(s.velocities, s.forces, alpha, active)
        s.velocities = mixed
        positive = power > 0
        since_negative = torch.where(active & positive, since_negative + 1, since_negative)
        grow = active & positive & (since_negative > fire.n_min)
        dt = torch.where(grow, torch.clamp(dt * fire.f_inc, max=fire.dt_max), dt)
        alpha = torch.where(grow, alpha * fire.f_alpha, alpha)
        shrink = active & ~positive
        dt = torch.where(shrink, dt * fire.f_dec, dt)
        alpha = torch.where(shrink, torch.full_like(alpha, fire.alpha_start), alpha)
        since_negative = torch.where(shrink, torch.zeros_like(since_negative), since_negative)
        s.velocities = torch.where(shrink.view(1, -1, 1), 0.0, s.velocities)
        if (iteration + 1) % engine.check_interval == 0:
            s.check_blowup()
        if not bool(active.any()):
            break
    if bool(active.any()):
        failed = torch.nonzero(active).flatten().tolist()
        worst = ", ".join(f"system {i}: mean |F| = {float(mean_force[i]):.3g}" for i in failed[:5])
        raise SimulationError(
            f"FIRE did not converge to mean |F| < {fire.force_tolerance:g} within "
            f"{fire.max_steps} steps for {len(failed)} of {b} configurations ({worst})"
        )
    s.rebuild(None)
    _, energy, _, _ = s.energy_check()
    result = s.to_configurations().with_velocities(None)
    return MinimizeResult(
        configurations=result,
        energy=(energy.double().sum(-1) / conf.n_particles).cpu().numpy(),
        steps=steps.cpu().numpy(),
        mean_force=mean_force.double().cpu().numpy(),
    )
