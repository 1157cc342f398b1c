"""Per-batch random streams: what makes augmentation and dropout independent of workers and of resumes.

The global generators a dataset and a model draw from (torch's CPU generator, python's ``random``,
numpy's global state; torch's CUDA generators in the main process) are seeded at two points of
every training batch:

- **data**: when a batch's samples are fetched, in whichever process fetches them (the main
  process, or the dataloader worker that got the batch), from ``(data seed, epoch, batch position,
  rank)``. The training batch sampler yields its index lists as ``SeededBatch``, which seeds when
  the fetch first iterates it.
- **step**: in the main process, after the batch is fetched and before its forward, torch's generators
  (CPU and CUDA: dropout's) from ``(seed, optimizer step, micro-batch)``.

So a dataset's ``__getitem__`` that augments with ``torch.rand``, ``random`` or ``numpy.random`` draws the
same numbers for the same batch whatever ``dataloader_num_workers`` is (0, 1, 2...), and a resumed
run draws what the uninterrupted one drew from its first step on, without restoring a worker's
state. The limits: an ``IterableDataset`` is not seeded per batch (its workers iterate on their own);
a dataset whose ``__getitems__`` reads its index list without iterating it is not either; other
generators (a ``torch.Generator`` the dataset holds, ``numpy.random.default_rng()``) are the
dataset's own business (``sample_generator(seed, epoch, index)`` gives one per sample). In the
workers every global generator is seeded per batch; in the main process (``dataloader_num_workers=0``)
only those that fetching the dataset's first sample drew from, found once when the dataloader is
built (seeding python's and numpy's costs some 25 microseconds a step there, torch's 5): a dataset
that draws from a generator for some samples only, not the first, is exact across resumes but may
differ between 0 and more workers. A step that itself draws from ``random`` or numpy (dropout draws
from torch's) sees the same numbers for any worker count only when the dataset draws from them too.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.utils.data

_MASK = (1 << 64) - 1
_PRIMES = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93, 0xA0761D6478BD642F)


def stream_seed(stream: int, seed: int, a: int, b: int, c: int = 0) -> int:
    """A 64-bit seed from five integers: each weighted by its own odd constant, then splitmix64's finalizer.
    The same in every process and Python run."""
    p0, p1, p2, p3, p4 = _PRIMES
    x = (stream * p0 + seed * p1 + a * p2 + b * p3 + c * p4) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


_torch_seed = torch.default_generator.manual_seed
_random_seed = random.seed
_numpy_seed = np.random.seed

TORCH, PYTHON, NUMPY = 1, 2, 4  # the global generators, as bits
ALL = TORCH | PYTHON | NUMPY


def seed_global_streams(seed: int, which: int = ALL, cuda: bool = False) -> None:
    """Seed the global generators in ``which`` (torch's CPU one, python's ``random``, numpy's global
    state; with ``cuda`` the CUDA devices' too) from one 64-bit ``seed``."""
    if which & TORCH:
        _torch_seed(seed)
    if which & PYTHON:
        _random_seed(seed)
    if which & NUMPY:
        _numpy_seed(seed & 0xFFFFFFFF)
    if cuda:
        torch.cuda.manual_seed_all(seed)  # every device's generator (DataParallel replicas included)


DATA, STEP = 1, 2  # the two streams of a batch


def seed_step(seed: int, step: int, micro: int) -> None:
    """The main process's torch streams (CPU, CUDA: dropout's) for micro-batch ``micro`` of optimizer step
    ``step`` (the global step before it), before its forward."""
    seed_global_streams(stream_seed(STEP, seed, step, micro), TORCH, cuda=torch.cuda.is_initialized())


def global_streams_used(dataset, index: int = 0) -> int:
    """Which global generators fetching ``dataset[index]`` draws from. Every state is put back; a fetch
    that fails counts as using all of them, and training meets the error itself."""
    saved = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    try:
        dataset[index]
    except Exception:
        return ALL
    finally:
        after = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])
    numpy_used = any(not np.array_equal(a, b) if isinstance(a, np.ndarray) else a != b
                     for a, b in zip(after[1], saved[2]))
    torch_used = not torch.equal(after[2], saved[0])
    return (TORCH if torch_used else 0) | (PYTHON if after[0] != saved[1] else 0) | (NUMPY if numpy_used else 0)


class SeededBatch(list):
    """A batch's sample indices, which seed the data streams of the process that fetches them the
    first time the fetch iterates them (a worker gets a pickled copy, which seeds there). A worker seeds
    every global generator; the main process those in ``which`` (the ones the dataset was seen to draw
    from), since seeding python's and numpy's costs some 25 microseconds on its step."""

    __slots__ = ("key", "which", "seeded")

    def __init__(self, indices, key: int, which: int = ALL):
        super().__init__(indices)
        self.key, self.which, self.seeded = key, which, False

    def __iter__(self):
        if not self.seeded:
            self.seeded = True
            which = ALL if torch.utils.data.get_worker_info() is not None else self.which
            if which:
                seed_global_streams(self.key, which)
        return list.__iter__(self)

    def __reduce__(self):  # pickled without iterating (which would seed the sending process)
        return SeededBatch, ([*list.__iter__(self)], self.key, self.which)


def data_key(seed: int, epoch: int, position: int, rank: int) -> int:
    return stream_seed(DATA, seed, epoch, position, rank)
