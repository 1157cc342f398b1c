"""Metrics that work offline: ``evaluate`` module scripts shipped here, and plain functions.

Online, the documented way stays the Hub: ``evaluate.load("accuracy")``. Without network (CI,
air-gapped clusters) load the same metric from the script shipped in this folder::

    from trainer.local_metrics import load_metric
    metric = evaluate.combine([load_metric("accuracy"), load_metric("f1", "macro")])
    Trainer(..., compute_metrics=metric, preprocess_logits_for_metrics=argmax_logits)

``classification_metrics()`` is the same pair as a function of ``EvalPrediction``, computed with
scikit-learn.
"""

from __future__ import annotations

import os

import numpy as np

LOCAL_METRICS = ("accuracy", "f1")


def metric_script(name: str) -> str:
    """Path of the ``evaluate`` script of the local metric ``name``."""
    if name not in LOCAL_METRICS:
        raise ValueError(f"no local metric named {name!r}; local metrics: {list(LOCAL_METRICS)} (online, use "
                         f"evaluate.load({name!r}) for the Hub's)")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")


def load_metric(name: str, config_name: str | None = None, **kwargs):
    """``evaluate.load`` of the local script ``name`` (no network); ``config_name`` e.g. "macro" for f1."""
    import evaluate

    return evaluate.load(metric_script(name), config_name, **kwargs)


def argmax_logits(logits, labels):
    """``preprocess_logits_for_metrics`` for classifiers: class ids instead of logits (the first output)."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def classification_metrics(average: str = "macro"):
    """A ``compute_metrics`` function: accuracy and F1 (``average``) with scikit-learn.

    Takes logits (argmax is applied) or class ids (after ``argmax_logits``).
    """
    from sklearn.metrics import accuracy_score, f1_score

    def compute_metrics(eval_pred) -> dict:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, (tuple, list)):
            preds = preds[0]
        preds = np.asarray(preds)
        if preds.ndim == np.asarray(labels).ndim + 1:
            preds = preds.argmax(-1)
        return {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f1_score(labels, preds, average=average))}

    return compute_metrics
