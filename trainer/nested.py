"""Nested tensors: the outputs, labels and batches of a model as tuples, lists and dicts of tensors, mapped,
flattened, rebuilt, detached, truncated, and read into numpy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


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


def batch_size_of(batch) -> int:
    """The number of samples in a batch: the leading dimension of its first tensor or array, whatever holds it
    (a dict, a ``Mapping`` such as transformers' ``BatchEncoding``, a tuple); without one, the length of its
    first value. Never the number of fields of a mapping."""
    first = _first_array(batch)
    if first is not None:
        return int(first.shape[0])
    if isinstance(batch, Mapping):
        return len(next(iter(batch.values())))
    return len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)


def _first_array(obj):
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return obj if obj.ndim > 0 else None
    values = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (list, tuple)) else ()
    for value in values:
        found = _first_array(value)
        if found is not None:
            return found
    return None
