"""The three compute_metrics forms on the same data (scikit-learn's digits, a fixed linear model).

Shared by the single-process tests and the 2-process script, which must all give the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainer.local_metrics import argmax_logits, classification_metrics, load_metric

NUM_CLASSES = 10


class DigitsDataset(torch.utils.data.Dataset):
    """The first ``n`` of scikit-learn's 1797 8x8 digits, features scaled to [0, 1]."""

    def __init__(self, n: int = 1797):
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.x = torch.tensor(digits.data[:n] / 16.0, dtype=torch.float32)
        self.y = torch.tensor(digits.target[:n], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"pixels": self.x[i], "labels": self.y[i]}


class DigitsClassifier(nn.Module):
    """A linear classifier with fixed random weights: mediocre, deterministic predictions."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(64, NUM_CLASSES)

    def forward(self, pixels, labels=None):
        logits = self.linear(pixels)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def batch_metrics():
    """The batch_eval_metrics form: a confusion matrix summed per batch; accuracy and macro F1 at the end."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    calls = []

    def compute_metrics(eval_pred, compute_result: bool) -> dict | None:
        preds = eval_pred.predictions
        preds = (preds.argmax(-1) if preds.dim() == 2 else preds).cpu().numpy()
        labels = eval_pred.label_ids.cpu().numpy()
        np.add.at(confusion, (labels, preds), 1)
        calls.append((len(labels), compute_result))
        if not compute_result:
            return None
        tp = np.diag(confusion).astype(np.float64)
        precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
        recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        result = {"accuracy": float(tp.sum() / confusion.sum()), "f1": float(f1.mean())}
        confusion[:] = 0
        return result

    compute_metrics.calls = calls
    return compute_metrics


def evaluate_module():
    import evaluate

    return evaluate.combine([load_metric("accuracy"), load_metric("f1", "macro")])


FORMS = {
    # name: (compute_metrics factory, preprocess_logits_for_metrics, batch_eval_metrics)
    "function": (lambda: classification_metrics("macro"), None, False),
    "function_argmax": (lambda: classification_metrics("macro"), argmax_logits, False),
    "evaluate": (evaluate_module, argmax_logits, False),
    "batch": (batch_metrics, None, True),
}


def trainer_for(form: str, args_factory, **overrides):
    from trainer import Trainer

    factory, preprocess, batch = FORMS[form]
    args = args_factory(batch_eval_metrics=batch, **overrides)
    return Trainer(DigitsClassifier(), args, compute_metrics=factory(), preprocess_logits_for_metrics=preprocess)


def comparable(metrics: dict, prefix: str = "eval") -> dict:
    """Loss and metric values, without the timings."""
    return {k: metrics[f"{prefix}_{k}"] for k in ("loss", "accuracy", "f1")}
