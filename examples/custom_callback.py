"""A custom callback: stop training once an evaluation metric reaches a target, and keep a record.

A callback subclasses ``TrainerCallback`` and overrides the events it needs (see
``callbacks/base.py`` for the order). It reads ``state`` and the event's keyword arguments
(here ``metrics`` in ``on_evaluate``) and acts only through ``control`` (``should_training_stop``).
State it returns from ``state()`` (``ExportableState``) is saved in checkpoints and restored on resume.

    python examples/custom_callback.py [--target 0.9] [any TrainingArguments flag]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import ExportableState, Trainer, TrainerCallback, set_seed  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.demo import DigitsCNN, compute_metrics, load_digits_splits  # noqa: E402


class StopAtTarget(TrainerCallback, ExportableState):
    """Stops training at the first evaluation where ``metric`` >= ``target``; remembers when it did."""

    def __init__(self, metric: str = "eval_accuracy", target: float = 0.9):
        self.metric = metric
        self.target = target
        self.reached_at_step: int | None = None
        self.history: list[tuple[int, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None:
            return
        self.history.append((state.global_step, value))
        if value >= self.target and self.reached_at_step is None:
            self.reached_at_step = state.global_step
            control.should_training_stop = True

    def state(self) -> dict:
        return {"args": {"metric": self.metric, "target": self.target},
                "attributes": {"reached_at_step": self.reached_at_step}}


def main(argv: list[str] | None = None) -> StopAtTarget:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--target", type=float, default=0.9, help="eval accuracy at which training stops")
    opts, rest = own.parse_known_args(argv)
    args = parse_training_args(rest, {
        "output_dir": "outputs/custom_callback", "overwrite_output_dir": True, "num_train_epochs": 20,
        "per_device_train_batch_size": 32, "learning_rate": 3e-3, "eval_strategy": "steps", "eval_steps": 10,
        "save_strategy": "no", "logging_steps": 10, "seed": 0,
    })
    train_set, eval_set = load_digits_splits(args.seed)
    set_seed(args.seed)
    stopper = StopAtTarget("eval_accuracy", opts.target)
    trainer = Trainer(DigitsCNN(), args, train_dataset=train_set, eval_dataset=eval_set,
                      compute_metrics=compute_metrics, callbacks=[stopper])
    trainer.train()
    if trainer.is_world_process_zero():
        print(f"target {opts.target} reached at step {stopper.reached_at_step} "
              f"(of {trainer.state.max_steps} planned); evaluations: {stopper.history}")
    return stopper


if __name__ == "__main__":
    main()
