"""``trainforge train CONFIG.yaml [--flag value ...]``: a training run described by a config file.

The config holds TrainingArguments fields plus two keys of its own:

- ``task: module:function`` (e.g. ``trainer.demo:build``) names a builder returning a dict of
  Trainer keyword arguments: ``model`` (or ``model_init``), ``train_dataset``, ``eval_dataset``,
  ``compute_metrics``, ``data_collator``, ``processing_class``, ``callbacks``...;
- ``task_args`` (optional): keyword arguments of the builder.

Flags override the file. The run trains, evaluates when there is an eval dataset, saves the
model, the state and the metrics (``train_results.json``, ``eval_results.json``, ``all_results.json``).
"""

from __future__ import annotations

import importlib
import os
import sys

from .argparsing import ConfigError, DataclassArgumentParser
from .arguments import TrainingArguments

TASK_KEYS = ("task", "task_args")  # the config's keys that are not TrainingArguments fields


def load_builder(spec: str):
    """The function named by ``module:function`` (the working directory is importable)."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"task={spec!r} must be 'module:function', e.g. 'trainer.demo:build'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"task={spec!r}: cannot import {module_name!r} ({err}); run from the directory that holds "
                         "it or install it") from err
    builder = getattr(module, func_name, None)
    if not callable(builder):
        raise ConfigError(f"task={spec!r}: {module_name} has no function {func_name!r}")
    return builder


def run_task_config(config_path: str, overrides: list[str]) -> dict:
    """Train as the config says; returns the train and eval metrics."""
    from .trainer import Trainer

    config = DataclassArgumentParser.read_config(config_path)
    task, task_args = config.get("task"), config.get("task_args") or {}
    if task is None:
        raise ConfigError(f"{config_path}: no 'task: module:function' key naming the builder of model and datasets "
                          "(or run a script: trainforge train SCRIPT.py)")
    if not isinstance(task_args, dict):
        raise ConfigError(f"task_args in {config_path} must be a mapping of the builder's keyword arguments, got "
                          f"{type(task_args).__name__}")
    parser = DataclassArgumentParser([TrainingArguments], prog=f"trainforge train {config_path}")
    (args,) = parser.parse(["--config", config_path, *overrides], ignore=TASK_KEYS)
    builder = load_builder(task)
    built = builder(**task_args)
    if not isinstance(built, dict):
        raise TypeError(f"task={task!r} must return a dict of Trainer keyword arguments (model, train_dataset...), "
                        f"got {type(built).__name__}")
    trainer = Trainer(args=args, **built)
    metrics = dict(trainer.train().metrics)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    if trainer.eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    trainer.save_model()
    trainer.save_state()
    return metrics
