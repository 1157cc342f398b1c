"""Quickstart: train a small CNN on scikit-learn's bundled digits (8x8 images, 10 classes).

Real data shipped with scikit-learn, so nothing is downloaded. Evaluates every epoch with
accuracy from ``compute_metrics``, saves a checkpoint per epoch (the best one is kept and
loaded at the end), shows progress bars and prints a final metrics table.

    python examples/quickstart.py [--output_dir outputs/quickstart] [--num_train_epochs 12] [...]

Any TrainingArguments field can be given as ``--name value``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import EvalPrediction, Trainer, set_seed  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402


class DigitsDataset(torch.utils.data.Dataset):
    """Digits images scaled to [0, 1] as ``pixel_values`` (1x8x8) with integer ``labels``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.images[i], "labels": self.labels[i]}


def load_digits_splits(seed: int = 0) -> tuple[DigitsDataset, DigitsDataset]:
    """80/20 stratified split of the 1,797 digits images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_eval, y_train, y_eval = train_test_split(
        data.images, data.target, test_size=0.2, random_state=seed, stratify=data.target
    )
    return DigitsDataset(x_train, y_train), DigitsDataset(x_eval, y_eval)


class DigitsCNN(nn.Module):
    """Two conv blocks and a linear head; returns ``{"loss", "logits"}`` like a transformers model."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 4 * 4, num_classes))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.head(self.features(pixel_values))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def compute_metrics(pred: EvalPrediction) -> dict:
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def build(seed: int = 0) -> dict:
    """The task for ``trainforge train configs/quickstart.yaml``: model, datasets and metrics."""
    train_set, eval_set = load_digits_splits(seed)
    set_seed(seed)  # before the model is built, so its initial weights are reproducible
    return {"model": DigitsCNN(), "train_dataset": train_set, "eval_dataset": eval_set,
            "compute_metrics": compute_metrics}


def main(argv: list[str] | None = None) -> dict:
    defaults = {
        "output_dir": "outputs/quickstart",
        "overwrite_output_dir": True,
        "num_train_epochs": 12,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 128,
        "learning_rate": 3e-3,
        "weight_decay": 0.01,
        "warmup_ratio": 0.05,
        "lr_scheduler_type": "cosine",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy",
        "logging_strategy": "epoch",
        "seed": 0,
    }
    args = parse_training_args(argv, defaults)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train_set, eval_set = load_digits_splits(args.seed)
    set_seed(args.seed)  # before the model is built, so its initial weights are reproducible
    trainer = Trainer(
        model=DigitsCNN(), args=args, train_dataset=train_set, eval_dataset=eval_set, compute_metrics=compute_metrics
    )
    train_metrics = trainer.train().metrics
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    trainer.save_model()
    trainer.save_state()
    if trainer.is_world_process_zero():
        print(f"eval_accuracy = {eval_metrics['eval_accuracy']:.4f}  "
              f"(best checkpoint: {trainer.state.best_model_checkpoint})")
    return eval_metrics


if __name__ == "__main__":
    main()
