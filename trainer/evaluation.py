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
    """What ``compute_metrics`` receives: ``predictions``, ``label_ids`` and optionally ``inputs``.

    Unpacks like a tuple: ``preds, labels = eval_pred`` (``inputs`` too when given).
    """

    def __init__(self, predictions, label_ids, inputs=None):
        self.predictions = predictions
        self.label_ids = label_ids
        self.inputs = inputs

    def _items(self) -> tuple:
        return (self.predictions, self.label_ids) + ((self.inputs,) if self.inputs is not None else ())

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


def pad_and_concat(a: torch.Tensor, b: torch.Tensor, padding_index: int = PAD_INDEX) -> torch.Tensor:
    """Concatenate on dim 0; if dim 1 differs, pad the shorter with ``padding_index``."""
    if a.dim() <= 1 or a.shape[1] == b.shape[1]:
        return torch.cat((a, b), dim=0)
    shape = (a.shape[0] + b.shape[0], max(a.shape[1], b.shape[1])) + tuple(a.shape[2:])
    out = a.new_full(shape, padding_index)
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0] :, : b.shape[1]] = b
    return out


def nested_concat(a, b, padding_index: int = PAD_INDEX):
    if a is None:
        return b
    if isinstance(a, (list, tuple)):
        return type(a)(nested_concat(x, y, padding_index) for x, y in zip(a, b))
    if isinstance(a, Mapping):
        return type(a)({k: nested_concat(v, b[k], padding_index) for k, v in a.items()})
    return pad_and_concat(a, b, padding_index)


def nested_numpy(obj):
    def to_np(t):
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()

    return nested_map(to_np, obj)


def nested_truncate(obj, limit: int):
    return nested_map(lambda t: t[:limit], obj)


def nested_detach(obj):
    return nested_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, obj)


class PredictionAccumulator:
    """Collects per-batch tensors, moving them to the CPU every ``move_every`` batches."""

    def __init__(self, move_every: int | None):
        self.move_every = move_every
        self.on_device = None
        self.on_host = None
        self.batches = 0

    def add(self, tensors) -> None:
        if tensors is None:
            return
        self.on_device = nested_concat(self.on_device, tensors)
        self.batches += 1
        if self.move_every is not None and self.batches % self.move_every == 0:
            self._flush()

    def _flush(self) -> None:
        if self.on_device is not None:
            moved = nested_map(lambda t: t.cpu(), self.on_device)
            self.on_host = nested_concat(self.on_host, moved)
            self.on_device = None

    def result(self, num_samples: int | None):
        self._flush()
        if self.on_host is None:
            return None
        out = nested_numpy(self.on_host)
        return nested_truncate(out, num_samples) if num_samples is not None else out


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


def strip_outputs(outputs, ignore_keys: list[str], drop_first: bool):
    """Model outputs without the loss (and ``ignore_keys``), as a tuple of tensors."""
    if isinstance(outputs, torch.Tensor):
        return None if drop_first else outputs
    if isinstance(outputs, Mapping):
        kept = tuple(v for k, v in outputs.items() if k not in ignore_keys and k != "loss" and v is not None)
        return kept or None
    kept = tuple(outputs[1:] if drop_first else outputs)
    return kept or None
