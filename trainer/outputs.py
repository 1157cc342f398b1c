"""What ``train()``, ``evaluate()`` and ``predict()`` return, and what ``compute_metrics`` gets: ``TrainOutput``,
``EvalLoopOutput``, ``PredictionOutput`` and ``EvalPrediction`` (transformers' names and fields)."""

from __future__ import annotations

from typing import Any, NamedTuple


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
