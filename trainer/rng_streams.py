"""Per-batch random streams: what makes augmentation and dropout independent of workers and of resumes.

The global generators a dataset and a model draw from (torch's CPU generator, python's ``random``,
numpy's global state; torch's CUDA generators in the main process) are seeded at two points of
every training batch:

- **data**: when a batch's samples are fetched, in whichever process fetches them (the main
  process, or the dataloader worker that got the batch), from ``(data seed, epoch, batch position,
  rank)``. The training batch sampler yields its index lists as ``SeededBatch``, which seeds when
  the fetch first iterates it.
- **step**: in the main process, after the batch is fetched and before its forward, from
  ``(seed, optimizer step, micro-batch)``, for dropout and whatever the step draws.

So a dataset's ``__getitem__`` that augments with ``torch.rand``, ``random`` or ``numpy.random`` draws the
same numbers for the same batch whatever ``dataloader_num_workers`` is (0, 1, 2...), and a resumed
run draws what the uninterrupted one drew from its first step on, without restoring a worker's
state. The limits: an ``IterableDataset`` is not seeded per batch (its workers iterate on their own);
a dataset whose ``__getitems__`` reads its index list without iterating it is not either; other
generators (a ``torch.Generator`` the dataset holds, ``numpy.random.default_rng()``) are the
dataset's own business (``sample_generator(seed, epoch, index)`` gives one per sample). Each seeding
is a few microseconds: about 15 a step.
"""

from __future__ import annotations

import random

import numpy as np
import torch

_MASK = (1 << 64) - 1


def stream_seed(*parts: int) -> int:
    """A 64-bit seed from integers (splitmix64 over each): the same in every process and Python run."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & _MASK)) & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
    return x


def seed_global_streams(seed: int, cuda: bool = False) -> None:
    """Seed torch's CPU generator, ``random`` and numpy's global state (and, with ``cuda``, the CUDA
    devices' generators) from one 64-bit ``seed``."""
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    if cuda:
        torch.cuda.manual_seed_all(seed)  # every device's generator (DataParallel replicas included)


DATA, STEP = 1, 2  # the two streams of a batch


def seed_step(seed: int, step: int, micro: int) -> None:
    """The main process's streams for micro-batch ``micro`` of optimizer step ``step`` (the global step
    before it), before its forward."""
    seed_global_streams(stream_seed(STEP, seed, step, micro), cuda=torch.cuda.is_initialized())


class SeededBatch(list):
    """A batch's sample indices, which seed the data streams of the process that fetches them the
    first time the fetch iterates them (a worker gets a pickled copy, which seeds there)."""

    __slots__ = ("key", "seeded")

    def __init__(self, indices, key: int):
        super().__init__(indices)
        self.key = key
        self.seeded = False

    def __iter__(self):
        if not self.seeded:
            self.seeded = True
            seed_global_streams(self.key)
        return list.__iter__(self)

    def __reduce__(self):  # pickled without iterating (which would seed the sending process)
        return SeededBatch, ([*list.__iter__(self)], self.key)


def data_key(seed: int, epoch: int, position: int, rank: int) -> int:
    return stream_seed(DATA, seed, epoch, position, rank)
