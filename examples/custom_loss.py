"""A custom loss by subclassing the Trainer: class-weighted cross-entropy on scikit-learn's digits.

Override ``compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None)``: the
Trainer calls it in training and in evaluation, so the eval loss is the weighted one too.
Here the classes listed in ``--upweight`` count ``--weight`` times as much as the others.

    python examples/custom_loss.py [--upweight 3 8] [--weight 4.0] [--num_train_epochs 6] [any TrainingArguments flag]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import EvalPrediction, Trainer, set_seed  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.demo import DigitsCNN, load_digits_splits  # noqa: E402


class WeightedLossTrainer(Trainer):
    """Cross-entropy with a weight per class."""

    def __init__(self, *args, class_weights: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(pixel_values=inputs["pixel_values"])
        weights = self.class_weights.to(outputs["logits"].device)
        loss = nn.functional.cross_entropy(outputs["logits"], labels, weight=weights)
        return (loss, outputs) if return_outputs else loss


def per_class_recall(pred: EvalPrediction) -> dict:
    preds = pred.predictions.argmax(-1)
    out = {"accuracy": float((preds == pred.label_ids).mean())}
    for c in range(10):
        mask = pred.label_ids == c
        out[f"recall_{c}"] = float((preds[mask] == c).mean()) if mask.any() else 0.0
    return out


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--upweight", type=int, nargs="+", default=[3, 8], help="classes whose loss counts more")
    own.add_argument("--weight", type=float, default=4.0, help="their weight (the others count 1)")
    opts, rest = own.parse_known_args(argv)
    args = parse_training_args(rest, {
        "output_dir": "outputs/custom_loss", "overwrite_output_dir": True, "num_train_epochs": 6,
        "per_device_train_batch_size": 32, "per_device_eval_batch_size": 128, "learning_rate": 3e-3,
        "eval_strategy": "epoch", "save_strategy": "no", "logging_strategy": "epoch", "seed": 0,
    })
    weights = torch.ones(10)
    weights[opts.upweight] = opts.weight
    train_set, eval_set = load_digits_splits(args.seed)
    set_seed(args.seed)
    trainer = WeightedLossTrainer(DigitsCNN(), args, train_dataset=train_set, eval_dataset=eval_set,
                                  compute_metrics=per_class_recall, class_weights=weights)
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("eval_accuracy", "eval_recall"))}
        print("weights:", np.round(weights.numpy(), 2).tolist())
        print("eval:", shown)
    return metrics


if __name__ == "__main__":
    main()
