"""The three forms ``compute_metrics`` takes, behind one interface the evaluation loop feeds.

| form | what it is given | what is kept in memory | when to use |
|---|---|---|---|
| a function ``f(EvalPrediction) -> dict`` | every prediction and label of the dataset as numpy arrays, at the end | all predictions (after ``preprocess_logits_for_metrics``) | metrics that need the whole set at once (AUC, corpus BLEU) |
| an ``evaluate`` module or ``evaluate.combine([...])`` | ``add_batch(predictions=, references=)`` at every step (numpy), ``compute()`` at the end | what the module keeps (its own arrow cache) | the metrics of the ``evaluate`` library, local scripts included |
| a function ``f(EvalPrediction, compute_result: bool)`` with ``batch_eval_metrics=True`` | one batch at a time as tensors; ``compute_result=True`` at the last batch, when it returns the dict | what the function keeps (running sums) | large evaluations with metrics that add up (accuracy, counts) |

In all three the batches are the gathered ones of every process, without the padding of a
distributed evaluation, so the numbers are the same whichever form computes them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import torch

from .nested import nested_leaves, nested_truncate, to_numpy
from .outputs import EvalPrediction


def is_evaluate_module(obj) -> bool:
    """An ``evaluate`` EvaluationModule or CombinedEvaluations (anything with add_batch and compute)."""
    return callable(getattr(obj, "add_batch", None)) and callable(getattr(obj, "compute", None))


def checked_metrics(result, source: str) -> dict:
    if not isinstance(result, Mapping):
        hint = " (did it forget to return?)" if result is None else ""
        raise TypeError(
            f"{source} must return a dict of metric name -> value, got {type(result).__name__}{hint}: "
            f"{str(result)[:80]}"
        )
    return dict(result)


class MetricsForm:
    """Base: no metrics (``compute_metrics=None``)."""

    keeps_predictions = False  # the evaluation loop must keep every prediction for compute()

    def start(self, num_samples: int | None) -> None:
        """A new evaluation over ``num_samples`` (None: unknown) begins."""
        self.num_samples = num_samples
        self.fed = 0

    def _real_rows(self, rows: int) -> int:
        """How many of the next ``rows`` gathered rows are samples (the rest is distributed padding)."""
        if self.num_samples is None:
            return rows
        return max(0, min(rows, self.num_samples - self.fed))

    def add_batch(self, predictions, labels, inputs, losses, last: bool) -> None:
        """One gathered batch (device tensors)."""

    def compute(self, eval_prediction: EvalPrediction | None) -> dict:
        return {}


class FunctionMetrics(MetricsForm):
    """``compute_metrics(EvalPrediction) -> dict`` over the whole dataset."""

    keeps_predictions = True

    def __init__(self, fn):
        self.fn = fn

    def compute(self, eval_prediction: EvalPrediction | None) -> dict:
        if eval_prediction is None:  # no predictions or no labels: nothing to compare
            return {}
        return checked_metrics(self.fn(eval_prediction), "compute_metrics")


class EvaluateModuleMetrics(MetricsForm):
    """An ``evaluate`` module fed with ``add_batch`` at every step; nothing kept by the loop."""

    def __init__(self, module):
        self.module = module
        names = getattr(module, "evaluation_module_names", None)  # evaluate.combine([...])
        self.name = "+".join(names) if names else getattr(module, "name", None) or type(module).__name__
        self.any_batch = False

    def start(self, num_samples: int | None) -> None:
        super().start(num_samples)
        self.any_batch = False

    def add_batch(self, predictions, labels, inputs, losses, last: bool) -> None:
        if predictions is None or labels is None:
            return
        if len(nested_leaves(predictions)) != 1:
            raise ValueError(
                f"the evaluate module {self.name!r} takes one predictions array, but the model returned "
                f"{len(nested_leaves(predictions))} outputs: reduce them with preprocess_logits_for_metrics, e.g. "
                "lambda logits, labels: logits[0].argmax(-1)"
            )
        predictions, labels = to_numpy(nested_leaves(predictions)[0]), to_numpy(nested_leaves(labels)[0])
        real = self._real_rows(len(predictions))
        self.fed += len(predictions)
        if real == 0:
            return
        try:
            self.module.add_batch(predictions=predictions[:real], references=labels[:real])
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"the evaluate module {self.name!r} rejected a batch of predictions of shape "
                f"{predictions.shape} ({predictions.dtype}) and references of shape {labels.shape}: "
                f"{str(err).splitlines()[0]} If the "
                "model returns logits, turn them into what the module expects with preprocess_logits_for_metrics, "
                "e.g. lambda logits, labels: logits.argmax(-1)"
            ) from err
        self.any_batch = True

    def compute(self, eval_prediction: EvalPrediction | None) -> dict:
        if not self.any_batch:
            return {}
        result = self.module.compute()
        if result is None:  # evaluate's own distributed mode: only its process 0 gets the values
            return {}
        return checked_metrics(result, f"the evaluate module {self.name!r}")


class BatchMetrics(MetricsForm):
    """``compute_metrics(EvalPrediction, compute_result)`` called at every batch (``batch_eval_metrics``)."""

    def __init__(self, fn, include_inputs: bool, include_loss: bool):
        self.fn = fn
        self.include_inputs = include_inputs
        self.include_loss = include_loss
        self.result = None

    def start(self, num_samples: int | None) -> None:
        super().start(num_samples)
        self.result = None

    def add_batch(self, predictions, labels, inputs, losses, last: bool) -> None:
        if predictions is None or labels is None:
            return
        rows = len(nested_leaves(labels)[0])
        real = self._real_rows(rows)
        self.fed += rows
        if real < rows:
            predictions, labels, inputs, losses = (
                nested_truncate(v, real) if v is not None else None for v in (predictions, labels, inputs, losses)
            )
        if real == 0 and not last:
            return
        batch = EvalPrediction(predictions, labels, inputs if self.include_inputs else None,
                               losses if self.include_loss else None)
        result = self.fn(batch, compute_result=last)
        if last:
            self.result = checked_metrics(result, "compute_metrics (batch_eval_metrics=True, compute_result=True)")

    def compute(self, eval_prediction: EvalPrediction | None) -> dict:
        return self.result or {}


def metrics_form(compute_metrics, batch_eval_metrics: bool, include_for_metrics: list[str]) -> MetricsForm:
    """The form ``compute_metrics`` is in (see the module table); checks it early."""
    if compute_metrics is None:
        return MetricsForm()
    if is_evaluate_module(compute_metrics):
        return EvaluateModuleMetrics(compute_metrics)
    if not callable(compute_metrics):
        raise TypeError(
            f"compute_metrics must be a function of EvalPrediction returning a dict, or an evaluate module; got "
            f"{type(compute_metrics).__name__}"
        )
    if batch_eval_metrics:
        params = inspect.signature(compute_metrics).parameters
        takes = "compute_result" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if not takes:
            raise TypeError(
                "batch_eval_metrics=True calls compute_metrics(eval_prediction, compute_result=...) at every batch, "
                "but this compute_metrics has no compute_result parameter: add it (return the dict when it is True) "
                "or set batch_eval_metrics=False"
            )
        return BatchMetrics(compute_metrics, "inputs" in include_for_metrics, "loss" in include_for_metrics)
    return FunctionMetrics(compute_metrics)


def denumpify(metrics: dict) -> dict:
    """Metric values as plain Python: numpy and torch scalars as numbers, arrays and tensors as (nested) lists,
    inside lists, tuples and dicts too; they go into JSON files (trainer_state.json) and the logging backends."""
    return {k: plain(v) for k, v in metrics.items()}


def plain(value):
    """``value`` with every numpy/torch scalar, array or tensor in it made a Python number or list."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def prefix_metrics(metrics: dict, prefix: str) -> dict:
    """Add ``{prefix}_`` to every key that does not already carry it."""
    start = f"{prefix}_"
    return {k if k.startswith(start) else start + k: v for k, v in metrics.items()}
