"""Quickstart: train a small CNN on scikit-learn's bundled digits (8x8 images, 10 classes).

Real data shipped with scikit-learn, so nothing is downloaded. Evaluates every epoch with accuracy
from ``compute_metrics``, saves a checkpoint per epoch (the best one is kept and loaded at the end),
shows progress bars and prints a final metrics table. The dataset, the model and the metric are
``trainer.demo``'s, installed with the package, so the README and the docs use them from any directory.

    python examples/quickstart.py [--output_dir outputs/quickstart] [--num_train_epochs 12] [...]

Any TrainingArguments field can be given as ``--name value``.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import Trainer, set_seed  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.demo import DigitsCNN, compute_metrics, load_digits_splits  # noqa: E402 (the model and data)


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
