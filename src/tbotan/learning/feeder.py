"""The graphs a training reads, built once and kept where ``training.cache_graphs`` says, fed
to the model on its device.

:class:`GraphFeeder` owns both caches of the training's graphs: the host cache (graphs built
from the dataset files, ``host`` and ``device``) and the device cache (those graphs moved to
the training device, ``device``).  Without a cache (``none``) every graph is read from its
HDF5 file and built at every visit, optionally by ``num_workers`` loader processes.  The
caches change nothing in the results (tested): a graph is built the same way every time, and
the training never changes a graph it was fed (the augmentation makes a new one).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch

from tbotan.learning.graphs import GraphDataset

#: ``training.cache_graphs`` values once ``auto`` is resolved (:func:`resolve_cache_mode`).
CACHE_MODES = ("none", "host", "device")


def resolve_cache_mode(setting: str, device: torch.device) -> str:
    """``training.cache_graphs`` with ``auto`` resolved: on the device for CUDA (HDF5 reads
    would dominate a GPU step), in host memory on the CPU (reading and building every graph at
    every step took 40 % of a CPU step at N = 400; the results are bit-identical)."""
    if setting == "auto":
        return "device" if device.type == "cuda" else "host"
    return setting


def moved(data, device: torch.device):
    """``data`` on ``device`` without touching the caller's graph (``Data.to`` moves in place:
    a host cache would silently become a device cache)."""
    if all(t.device == device for t in (data.x, data.edge_index)):
        return data
    return copy.copy(data).to(device, non_blocking=True)


class GraphFeeder:
    """The graphs of one :class:`~tbotan.learning.graphs.GraphDataset`, on the training device.

    Args:
        dataset: the configurations (any files, any temperatures).
        device: the training device.
        cache: ``'none'``, ``'host'`` or ``'device'`` (:func:`resolve_cache_mode`).
        num_workers: loader processes that build the graphs (``cache='none'`` only; 0: built
            in this process).

    ``feeder[i]`` is graph ``i`` as built on the host (cached unless ``cache='none'``),
    :meth:`sample` the same graph on the device, :meth:`feed` graphs in a given order.
    """

    def __init__(
        self, dataset: GraphDataset, device: torch.device, cache: str, num_workers: int = 0
    ) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}: {cache!r}")
        self.dataset = dataset
        self.device = torch.device(device)
        self.cache = cache
        self.num_workers = int(num_workers)
        self._host: dict[int, object] = {}
        self._device: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        """Graph ``i`` (a PyG ``Data``) in host memory."""
        if self.cache == "none":
            return self.dataset[i]
        if i not in self._host:
            self._host[i] = self.dataset[i]
        return self._host[i]

    def sample(self, i: int):
        """Graph ``i`` on the training device (the cached copy with ``cache='device'``)."""
        if self.cache == "device":
            if i not in self._device:
                self._device[i] = moved(self[i], self.device)
            return self._device[i]
        return moved(self[i], self.device)

    def feed(self, order: Iterable[int]) -> Iterator:
        """The graphs of ``order`` (dataset indices), one by one, on the training device."""
        if self.num_workers == 0 or self.cache != "none":
            return (self.sample(int(i)) for i in order)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=None,
            sampler=[int(i) for i in order],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        return (moved(data, self.device) for data in loader)

    def cached(self) -> tuple[int, int]:
        """(graphs in the host cache, graphs in the device cache)."""
        return len(self._host), len(self._device)
