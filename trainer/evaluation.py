"""Evaluation containers and the accumulation of predictions across batches.

Ragged sequence outputs (batches of different lengths) are padded with -100 on their second
dimension when concatenated, so ``predict()`` returns one array per output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

PAD_INDEX = -100


class EvalPrediction:
    """What ``compute_metrics`` receives: ``predictions``, ``label_ids`` and, when asked for with
    ``include_for_metrics``, ``inputs`` (the main input, e.g. ``input_ids``) and ``losses`` (each
    sample's batch loss).

    Unpacks like a tuple: ``preds, labels = eval_pred`` (then ``inputs`` and ``losses`` when given).
    """

    def __init__(self, predictions, label_ids, inputs=None, losses=None):
        self.predictions = predictions
        self.label_ids = label_ids
        self.inputs = inputs
        self.losses = losses

    def _items(self) -> tuple:
        extra = tuple(v for v in (self.inputs, self.losses) if v is not None)
        return (self.predictions, self.label_ids) + extra

    def __iter__(self):
        return iter(self._items())

    def __getitem__(self, idx):
        return self._items()[idx]

    def __len__(self) -> int:
        return len(self._items())


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float] | None


class EvalLoopOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float] | None
    num_samples: int


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, float]


# -- nested tensors -----------------------------------------------------------------------
def nested_map(fn, obj):
    if isinstance(obj, (list, tuple)):
        return type(obj)(nested_map(fn, o) for o in obj)
    if isinstance(obj, Mapping):
        return type(obj)({k: nested_map(fn, v) for k, v in obj.items()})
    return fn(obj)


def nested_leaves(obj) -> list:
    """The leaves of a nested tuple/list/dict, in ``nested_map`` order."""
    leaves = []
    nested_map(leaves.append, obj)
    return leaves


def nested_rebuild(template, leaves: list):
    """``template``'s structure with its leaves replaced, in order, by ``leaves``."""
    it = iter(leaves)
    return nested_map(lambda _: next(it), template)


def nested_detach(obj):
    return nested_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, obj)


def nested_truncate(obj, limit: int):
    return nested_map(lambda t: t[:limit], obj)


def to_numpy(tensor) -> np.ndarray:
    """A host numpy array of ``tensor`` (bfloat16 read as float32, numpy has no bfloat16)."""
    if not isinstance(tensor, torch.Tensor):
        return np.asarray(tensor)
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()


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


def denumpify(metrics: dict) -> dict:
    """numpy scalars -> Python floats/ints, for JSON and logs."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        out[k] = v
    return out


def prefix_metrics(metrics: dict, prefix: str) -> dict:
    """Add ``{prefix}_`` to every key that does not already carry it."""
    start = f"{prefix}_"
    return {k if k.startswith(start) else start + k: v for k, v in metrics.items()}


class LabelSmoother:
    """Cross-entropy with label smoothing ``epsilon``, ignoring positions labelled -100."""

    def __init__(self, epsilon: float, ignore_index: int = PAD_INDEX):
        self.epsilon = epsilon
        self.ignore_index = ignore_index

    def __call__(self, model_output, labels: torch.Tensor, shift_labels: bool = False) -> torch.Tensor:
        logits = model_output["logits"] if isinstance(model_output, Mapping) else model_output[0]
        if shift_labels:
            logits = logits[..., :-1, :].contiguous()
            labels = labels[..., 1:].contiguous()
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=self.ignore_index,
            label_smoothing=self.epsilon,
        )


# Outputs that are never predictions: the key-value cache of generative models. transformers names it
# ``past_key_values`` (and ``cache`` in a few models); its configs used to list it in
# ``keys_to_ignore_at_inference``, which transformers 5.25 dropped from most of them.
DEFAULT_IGNORE_KEYS = ("past_key_values", "cache")


def inference_ignore_keys(model) -> list[str]:
    """The output keys ``prediction_step`` drops when the caller passes no ``ignore_keys``: the model
    config's ``keys_to_ignore_at_inference`` when it declares one, else the cache keys above."""
    config = getattr(model, "config", None)
    keys = getattr(config, "keys_to_ignore_at_inference", None) if config is not None else None
    return list(keys) if keys is not None else list(DEFAULT_IGNORE_KEYS)


def is_prediction(value) -> bool:
    """A tensor, or a list/tuple/dict whose leaves are all tensors: what evaluation can gather and store.
    ``None`` and other objects (a ``Cache``, a string) are not."""
    leaves = nested_leaves(value)
    return bool(leaves) and all(isinstance(t, torch.Tensor) for t in leaves)


def strip_outputs(outputs, ignore_keys: list[str], drop_first: bool):
    """Model outputs as a tuple of predictions: without the loss, ``ignore_keys`` and any value that is
    not made of tensors (a cache object under a key nobody listed)."""
    if isinstance(outputs, torch.Tensor):
        return None if drop_first else outputs
    if isinstance(outputs, Mapping):
        kept = tuple(v for k, v in outputs.items() if k not in ignore_keys and k != "loss" and is_prediction(v))
        return kept or None
    kept = tuple(v for v in (outputs[1:] if drop_first else outputs) if is_prediction(v))
    return kept or None
