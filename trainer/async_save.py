"""Asynchronous checkpoint writing (``save_async=True``).

The training thread copies the checkpoint's state to host memory (weights, optimizer, scheduler,
scaler, trainer state, data position, RNG) and hands the writing to one background thread, so
training resumes while the files are written. The guarantees of a blocking save are kept:

- the files go into the temporary ``.tmp-checkpoint-N`` folder, are fsynced, and the folder gets
  its final name only when complete; a crash mid-write leaves the previous checkpoints as they were;
- at most one save is in flight: the next save, the end of training, loading the best model and
  a resume wait for it, so host memory holds one copy of the state at most;
- the writer thread is not a daemon: a run that raises after a save still finishes writing it
  before the interpreter exits, and a failed write is raised at the next wait with the path.

What is written is the state at the save's step, since the copies are taken before training moves on.
The host buffers are kept from one save to the next (``CheckpointWriter.staging``; pinned when the state is on a
GPU): after the first save, a copy is a memcpy into memory already mapped, with no allocation and no page faults
(a 100M-parameter model's weights and Adam state: 1.2 GB held between saves).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import torch


def host_copy(obj, staging: dict | None = None, where: tuple = (), _memo: dict | None = None):
    """A copy of ``obj`` whose tensors are on the CPU and share no memory with the originals.

    Tensors that are the same view of the same memory (tied weights) stay one tensor in the copy. With
    ``staging`` (a dict kept between calls), each tensor is copied into the buffer its place in ``obj`` had the
    last time (``where`` names ``obj``'s place), when shape and dtype still match; the caller makes sure nothing
    still reads the previous copy.
    """
    memo = {} if _memo is None else _memo
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() and key in memo:
            return memo[key]
        out = _staged_copy(t, staging, where)
        memo[key] = out
        return out
    if isinstance(obj, dict):
        items = [(k, host_copy(v, staging, (*where, _place(k)), memo)) for k, v in obj.items()]
        return dict(items) if type(obj) is dict else type(obj)(items)
    if isinstance(obj, list):
        return [host_copy(v, staging, (*where, i), memo) for i, v in enumerate(obj)]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(host_copy(v, staging, (*where, i), memo) for i, v in enumerate(obj))
    return copy.deepcopy(obj)


def _place(key) -> str | int:
    """A dict key as a stable name: checkpoint parts are keyed by their file."""
    return key if isinstance(key, (str, int)) else str(getattr(key, "file", key))


def _staged_copy(t: torch.Tensor, staging: dict | None, where: tuple) -> torch.Tensor:
    if staging is None:
        return t.clone() if t.device.type == "cpu" else t.to("cpu", copy=True)
    buffer = staging.get(where)
    if buffer is None or buffer.shape != t.shape or buffer.dtype != t.dtype:
        buffer = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.device.type == "cuda")
        staging[where] = buffer
    buffer.copy_(t)
    return buffer


class CheckpointWriter:
    """One background thread, one checkpoint at a time."""

    def __init__(self):
        self.staging: dict = {}  # the host buffers of the last save's copies, reused by the next (host_copy)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._path: str | None = None

    def submit(self, path: str, job: Callable[[], None]) -> None:
        self.wait()
        self._path = path
        self._thread = threading.Thread(target=self._run, args=(job,), name="trainforge-checkpoint-writer")
        self._thread.start()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:  # handed to the training thread at the next wait
            self._error = e

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the save in flight (if any) is on disk; raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(
                f"the asynchronous save of {self._path} failed ({type(error).__name__}: {error}); it was never renamed "
                "into place, so the checkpoints before it are intact"
            ) from error
