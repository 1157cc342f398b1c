"""EarlyStoppingCallback: stop training when the tracked metric stops improving.

Reads ``metrics[args.metric_for_best_model]`` (``eval_`` prefix added when missing) at every
evaluation. Logs nothing; its patience counter is saved in checkpoints (ExportableState).
"""

from __future__ import annotations

import logging

import numpy as np

from .base import ExportableState, TrainerCallback
from .strategies import IntervalStrategy

logger = logging.getLogger(__name__)


class EarlyStoppingCallback(TrainerCallback, ExportableState):
    """Stop after ``early_stopping_patience`` evaluations without an improvement.

    An evaluation improves when the metric beats the best one so far by more than
    ``early_stopping_threshold`` in the direction of ``args.greater_is_better``.
    """

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        if early_stopping_patience < 1:
            raise ValueError(
                f"early_stopping_patience={early_stopping_patience} must be >= 1: it counts evaluations "
                "without improvement before stopping"
            )
        if early_stopping_threshold < 0:
            raise ValueError(f"early_stopping_threshold={early_stopping_threshold} must be >= 0")
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        self.early_stopping_patience_counter = 0
        self.best_metric: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None:
            raise ValueError(
                "EarlyStoppingCallback needs metric_for_best_model: set TrainingArguments("
                "metric_for_best_model='eval_loss') or another evaluation metric"
            )
        if args.eval_strategy == IntervalStrategy.NO:
            raise ValueError(
                "EarlyStoppingCallback needs evaluations during training: set eval_strategy='steps' or 'epoch'"
            )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        if not name.startswith("eval_"):
            name = f"eval_{name}"
        value = (metrics or {}).get(name)
        if value is None:
            logger.warning(
                "EarlyStoppingCallback: metric %r is not among the evaluation metrics %s; early stopping is idle",
                name,
                sorted(metrics or {}),
            )
            return
        self.check_metric_value(args, state, control, value)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def check_metric_value(self, args, state, control, metric_value) -> None:
        """Count an evaluation without improvement, or reset the count on one that improves (transformers'
        name; the best value compared with is this callback's own, kept in its checkpointed state)."""
        operator = np.greater if args.greater_is_better else np.less
        if self.best_metric is None or (
            operator(metric_value, self.best_metric)
            and abs(metric_value - self.best_metric) > self.early_stopping_threshold
        ):
            self.best_metric = float(metric_value)
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1

    def state(self) -> dict:
        return {
            "args": {
                "early_stopping_patience": self.early_stopping_patience,
                "early_stopping_threshold": self.early_stopping_threshold,
            },
            "attributes": {
                "early_stopping_patience_counter": self.early_stopping_patience_counter,
                "best_metric": self.best_metric,
            },
        }
