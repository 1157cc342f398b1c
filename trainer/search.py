"""``Trainer.hyperparameter_search``: the trainer's side of a search, driven by a backend in
``integrations/hpo``. The ``Search`` is a collaborator the Trainer holds (``trainer._search``) while a
search runs; outside one it is None.

Each trial: the hp space gives values -> applied to a copy of the TrainingArguments (names and
types checked; ``output_dir`` becomes ``<output_dir>/run-<trial id>``) -> ``model_init`` builds a
fresh model, and ``train()`` a fresh optimizer and scheduler -> at every evaluation the objective
is computed and reported to the backend (which may prune the trial) -> the trial's objective is
that of its last evaluation (or of an ``evaluate()`` after training when none ran).
``TrainerState.is_hyper_param_search``, ``trial_name`` and ``trial_params`` tell callbacks (W&B,
MLflow and TensorBoard give each trial its own run) which trial runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from integrations.hpo import choose_backend, default_compute_objective

if TYPE_CHECKING:  # pragma: no cover
    from .arguments import TrainingArguments
    from .trainer import Trainer

DIRECTIONS = ("minimize", "maximize")


class Search:
    """One ``hyperparameter_search`` call: what a backend needs to run trials on the trainer."""

    def __init__(self, trainer: Trainer, backend, hp_space: Callable | None, compute_objective: Callable | None,
                 hp_name: Callable | None, direction):
        self.trainer = trainer
        self.backend = backend
        self.hp_space = hp_space or backend.default_hp_space
        self.compute_objective = compute_objective or default_compute_objective
        self.hp_name = hp_name
        self.direction = direction
        self.base_args = trainer.args
        self.trial = None  # the trial training now
        self.trial_params: dict = {}
        self.objective = None  # the running trial's objective, from its last evaluation

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.direction, (list, tuple))

    def trial_name(self, trial) -> str:
        return self.hp_name(trial) if self.hp_name is not None else f"run-{self.backend.trial_id(trial)}"

    def begin_trial(self, trial) -> None:
        """At ``train(trial=...)``: the trial's hyperparameters applied to a fresh copy of the arguments, and
        what the Trainer derives from the arguments rebuilt."""
        from .label_smoothing import label_smoother_for

        self.trial = trial
        self.trial_params = self.backend.params(trial, self.hp_space)
        trial_dir = os.path.join(self.base_args.output_dir, f"run-{self.backend.trial_id(trial)}")
        trainer = self.trainer
        trainer.args = apply_hyperparameters(self.base_args, self.trial_params, trial_dir)
        trainer._train_batch_size = trainer.args.train_batch_size
        trainer.label_smoother = label_smoother_for(trainer.args, trainer.model)

    def mark_state(self, state) -> None:
        """Tell callbacks (through ``TrainerState``) which trial runs."""
        if self.trial is not None:
            state.is_hyper_param_search = True
            state.trial_name = self.trial_name(self.trial)
            state.trial_params = dict(self.trial_params)

    def report(self, metrics: dict) -> None:
        """An evaluation of the running trial: its objective, reported to the backend (which may prune it)."""
        if self.trial is None:
            return
        self.objective = self.objective_of(metrics)
        self.backend.report(self, self.trial, self.objective, self.trainer.state.global_step)

    def run_trial(self, trial, resume_from_checkpoint=None):
        """Train one trial; its objective: the last evaluation's, or a final ``evaluate()``'s."""
        trainer = self.trainer
        self.objective = None
        trainer.train(resume_from_checkpoint=resume_from_checkpoint, trial=trial)
        if self.objective is None:
            self.objective = self.objective_of(trainer.evaluate())
        return self.objective

    def objective_of(self, metrics: dict):
        value = self.compute_objective(metrics)
        if self.multi_objective:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(values) != len(self.direction):
                raise ValueError(f"compute_objective returned {len(values)} values for {len(self.direction)} "
                                 f"directions {list(self.direction)}: return one value per direction")
            return [float(v) for v in values]
        if isinstance(value, (list, tuple)):
            raise ValueError(f"compute_objective returned {len(value)} values but direction={self.direction!r} "
                             "is one: pass a list of directions for a multi-objective search")
        return float(value)


def run_search(trainer: Trainer, hp_space=None, compute_objective=None, n_trials: int = 20,
               direction: str | list[str] = "minimize", backend: str | None = None, hp_name=None, **kwargs):
    """See ``Trainer.hyperparameter_search``."""
    if trainer.model_init is None:
        raise RuntimeError(
            "hyperparameter_search needs a Trainer built with model_init=... (a function returning a fresh model): "
            "each trial trains a new model"
        )
    directions = list(direction) if isinstance(direction, (list, tuple)) else [direction]
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad or not directions:
        raise ValueError(f"direction={direction!r}: each direction must be one of {list(DIRECTIONS)}")
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials={n_trials!r} must be a whole number >= 1")
    search = Search(trainer, choose_backend(backend), hp_space, compute_objective, hp_name, direction)
    trainer._search = search
    try:
        return search.backend.run(search, n_trials, direction, **kwargs)
    finally:
        trainer._search = None
        trainer.args = search.base_args


def apply_hyperparameters(args: TrainingArguments, params: dict[str, Any], output_dir: str) -> TrainingArguments:
    """A copy of ``args`` with ``params`` (TrainingArguments field names) and ``output_dir``; names and types checked."""
    fields = {f.name for f in dataclasses.fields(args) if f.init}
    unknown = [k for k in params if k not in fields]
    if unknown:
        hints = {k: difflib.get_close_matches(k, fields, n=1) for k in unknown}
        listed = ", ".join(f"{k!r}" + (f" (did you mean {m[0]!r}?)" if m else "") for k, m in hints.items())
        raise ValueError(
            f"the hp space returned {listed}, which is not a TrainingArguments field: hyperparameters must be named "
            "after the arguments they set, e.g. learning_rate, per_device_train_batch_size, num_train_epochs, "
            "weight_decay, warmup_ratio, seed"
        )
    values = {k: _coerce(k, v, getattr(args, k)) for k, v in params.items()}
    return dataclasses.replace(args, output_dir=output_dir, **values)


def _coerce(name: str, value, current):
    """``value`` as the type of the argument's current value (an int stays an int...), or a clear error."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif isinstance(current, enum.Enum) or isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    else:
        return value
    raise TypeError(
        f"the hp space gave {name}={value!r} ({type(value).__name__}), but {name} takes a "
        f"{type(current).__name__} like its current value {current!r}"
    )
