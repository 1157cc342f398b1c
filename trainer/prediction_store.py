"""Where evaluation keeps predictions, labels, inputs and losses across batches: numpy buffers on the host,
preallocated for the dataset when its size is known (``eval_accumulation_steps`` sets how often the device's
batches are copied over).

Ragged sequence outputs (batches of different lengths) are padded with -100 on their second
dimension when concatenated, so ``predict()`` returns one array per output.
"""

from __future__ import annotations

import numpy as np
import torch

from .nested import nested_leaves, nested_map, nested_rebuild, nested_truncate, to_numpy

PAD_INDEX = -100


class HostArray:
    """One output's rows, stored on the host in a numpy buffer that grows in place.

    The buffer is allocated once for ``capacity`` rows when the number of samples is known
    (and doubled when it is not, or when more rows come), so an evaluation costs one copy per
    batch instead of a list of tensors concatenated at the end. A batch longer on dimension 1
    than the rows before widens the buffer, the new room filled with ``padding_index``
    (ragged sequence outputs, e.g. token predictions of different lengths).
    """

    def __init__(self, padding_index: int = PAD_INDEX, capacity: int | None = None):
        self.padding_index = padding_index
        self.capacity = capacity
        self.buffer: np.ndarray | None = None
        self.rows = 0

    def append(self, batch: np.ndarray) -> None:
        batch = np.atleast_1d(batch)
        if self.buffer is None:
            rows = max(self.capacity or 0, len(batch))
            self.buffer = self._new((rows,) + batch.shape[1:], batch.dtype)
        elif batch.shape[2:] != self.buffer.shape[2:] or batch.ndim != self.buffer.ndim:
            raise ValueError(
                f"a prediction batch of shape {tuple(batch.shape)} does not stack with the earlier ones "
                f"{(self.rows,) + tuple(self.buffer.shape[1:])}: only dimension 1 (sequence length) may vary "
                "between batches; return fixed-shape outputs or set eval_do_concat_batches=False"
            )
        need_rows = self.rows + len(batch)
        width = max(self.buffer.shape[1], batch.shape[1]) if batch.ndim > 1 else None
        if need_rows > len(self.buffer) or (width is not None and width > self.buffer.shape[1]):
            rows = len(self.buffer) if need_rows <= len(self.buffer) else max(need_rows, 2 * len(self.buffer))
            grown = self._new((rows,) + ((width,) if width else ()) + self.buffer.shape[2:],
                              np.result_type(self.buffer.dtype, batch.dtype))
            if width:
                grown[: self.rows, : self.buffer.shape[1]] = self.buffer[: self.rows]
            else:
                grown[: self.rows] = self.buffer[: self.rows]
            self.buffer = grown
        if batch.ndim > 1:
            self.buffer[self.rows : need_rows, : batch.shape[1]] = batch
        else:
            self.buffer[self.rows : need_rows] = batch
        self.rows = need_rows

    def _new(self, shape: tuple, dtype) -> np.ndarray:
        if len(shape) > 1:
            return np.full(shape, self.padding_index, dtype=dtype)
        return np.empty(shape, dtype=dtype)

    def result(self, limit: int | None = None) -> np.ndarray | None:
        if self.buffer is None:
            return None
        rows = self.rows if limit is None else min(limit, self.rows)
        return self.buffer[:rows]


class PredictionStore:
    """Per-batch outputs (a tensor or a nested tuple/dict of them) collected as host numpy arrays.

    Batches wait on their device for ``move_every`` steps (``eval_accumulation_steps``; ``None``:
    until the end, faster on an accelerator but holding every output in device memory), then
    are copied to the host together, with one synchronisation. On the CPU they are stored at
    once. ``concat=False`` keeps each batch as its own array (``eval_do_concat_batches``).
    """

    def __init__(self, move_every: int | None, device: torch.device, padding_index: int = PAD_INDEX,
                 capacity: int | None = None, concat: bool = True):
        self.move_every = 1 if device.type == "cpu" else move_every
        self.padding_index = padding_index
        self.capacity = capacity
        self.concat = concat
        self.template = None
        self.columns: list[HostArray] = []
        self.batches: list = []  # concat=False
        self.pending: list = []

    def add(self, tensors) -> None:
        if tensors is None:
            return
        self.pending.append(tensors)
        if self.move_every is not None and len(self.pending) >= self.move_every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        on_cuda = any(t.device.type == "cuda" for batch in self.pending for t in nested_leaves(batch))
        moved = [nested_map(lambda t: t.to("cpu", non_blocking=on_cuda), batch) for batch in self.pending]
        self.pending = []
        if on_cuda:
            torch.cuda.synchronize()  # the copies were queued without waiting: one wait for all of them
        for batch in moved:
            leaves = [to_numpy(t) for t in nested_leaves(batch)]
            if not self.concat:
                self.batches.append(nested_rebuild(batch, leaves))
                continue
            if self.template is None:
                self.template = batch
                self.columns = [HostArray(self.padding_index, self.capacity) for _ in leaves]
            for column, leaf in zip(self.columns, leaves):
                column.append(leaf)

    def result(self, num_samples: int | None):
        self.flush()
        if not self.concat:
            return _truncate_batches(self.batches, num_samples) if self.batches else None
        if self.template is None:
            return None
        return nested_rebuild(self.template, [column.result(num_samples) for column in self.columns])


def _truncate_batches(batches: list, limit: int | None) -> list:
    """Per-batch outputs without the rows past ``limit`` (distributed padding at the end)."""
    if limit is None:
        return batches
    kept, seen = [], 0
    for batch in batches:
        rows = len(nested_leaves(batch)[0])
        if seen >= limit:
            break
        kept.append(batch if seen + rows <= limit else nested_truncate(batch, limit - seen))
        seen += rows
    return kept
