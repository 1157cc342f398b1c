"""Hyperparameter search with optuna on scikit-learn's digits (the quickstart's CNN).

Each trial builds a fresh model with ``model_init``; the objective (eval accuracy, maximized) is
reported at every evaluation, so the MedianPruner stops trials that fall behind. With
``--storage sqlite:///search.db`` the study is saved: re-run the same command after a crash and
the search continues where it stopped. ``--backend ray`` runs the trials with Ray Tune instead
(the hp space then uses ``ray.tune`` distributions).

    python examples/hyperparameter_search.py [--n_trials 8] [--storage sqlite:///outputs/search.db]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import Trainer  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.demo import DigitsCNN, compute_metrics, load_digits_splits  # noqa: E402


def optuna_space(trial) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [16, 32, 64]),
    }


def ray_space(trial=None) -> dict:
    from ray import tune

    return {"learning_rate": tune.loguniform(1e-4, 1e-2), "weight_decay": tune.uniform(0.0, 0.1),
            "per_device_train_batch_size": tune.choice([16, 32, 64])}


def main(argv: list[str] | None = None):
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--n_trials", type=int, default=8)
    own.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    own.add_argument("--storage", default=None, help="optuna storage URL, e.g. sqlite:///outputs/search.db")
    own.add_argument("--study_name", default="digits")
    opts, rest = own.parse_known_args(argv)
    args = parse_training_args(rest, {
        "output_dir": "outputs/hyperparameter_search", "overwrite_output_dir": True, "num_train_epochs": 3,
        "per_device_eval_batch_size": 256, "eval_strategy": "epoch", "save_strategy": "no",
        "logging_strategy": "epoch", "disable_tqdm": True, "seed": 0,
    })
    train_set, eval_set = load_digits_splits(args.seed)
    trainer = Trainer(model_init=lambda: DigitsCNN(), args=args, train_dataset=train_set, eval_dataset=eval_set,
                      compute_metrics=compute_metrics)
    kwargs = {}
    if opts.backend == "optuna":
        import optuna

        kwargs = {"pruner": optuna.pruners.MedianPruner(n_startup_trials=2), "storage": opts.storage,
                  "study_name": opts.study_name if opts.storage else None,
                  "sampler": optuna.samplers.TPESampler(seed=args.seed)}
    best = trainer.hyperparameter_search(
        hp_space=optuna_space if opts.backend == "optuna" else ray_space, n_trials=opts.n_trials,
        direction="maximize", compute_objective=lambda metrics: metrics["eval_accuracy"], backend=opts.backend,
        **kwargs)
    print(f"best trial {best.run_id}: eval_accuracy {best.objective:.4f} with {best.hyperparameters}")
    return best


if __name__ == "__main__":
    main()
