"""Resuming: which checkpoint, what it holds, and putting it back into a run.

``resume_from_checkpoint`` takes a path, ``True`` (the newest complete checkpoint in
``output_dir``; an error if there is none) or ``"auto"`` (the newest if any, else a fresh start).
Everything is read before anything is changed, so a bad checkpoint fails early with a message
naming the file and the fix. Nothing is unpickled: safetensors, JSON and
``torch.load(weights_only=True)`` only.

Order that makes a resumed run continue bit-for-bit (docs/checkpoints.md):
model weights -> optimizer/scheduler/scaler -> trainer state and callbacks -> data position
(dataloader state, loaded before the resumed epoch's iterator is created) -> RNG, restored
right after that iterator exists and before the first resumed step.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from callbacks import ExportableState, TrainerState

from . import checkpoint as ckpt

logger = logging.getLogger(__name__)

# Arguments whose change makes a resumed run differ from the one it continues.
TRAJECTORY_ARGS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "weight_decay", "optim", "seed", "data_seed", "max_grad_norm",
    "num_train_epochs", "max_steps", "group_by_length", "dataloader_drop_last",
)


def resolve_checkpoint(value, output_dir: str) -> str | None:
    """The checkpoint directory ``resume_from_checkpoint`` designates, or None for a fresh start."""
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("", "false", "none")):
        return None
    if value is True or (isinstance(value, str) and value.lower() in ("true", "auto")):
        found = ckpt.list_checkpoints(output_dir)
        if found:
            return found[-1]
        if isinstance(value, str) and value.lower() == "auto":
            logger.info("resume_from_checkpoint='auto': no checkpoint in %s, starting a new run", output_dir)
            return None
        raise ValueError(
            f"resume_from_checkpoint=True, but output_dir={output_dir!r} holds no complete checkpoint "
            "(a checkpoint-N directory with trainer_state.json): pass a checkpoint path, or 'auto' to start fresh "
            "when there is none"
        )
    path = os.fspath(value)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"resume_from_checkpoint={path!r}: no such directory")
    if not os.path.isfile(os.path.join(path, ckpt.TRAINER_STATE_NAME)):
        raise ValueError(
            f"resume_from_checkpoint={path!r} is not a checkpoint: it has no {ckpt.TRAINER_STATE_NAME} "
            f"(it holds {sorted(os.listdir(path))}); pass a checkpoint-N directory written by train()"
        )
    return path


@dataclass
class ResumePoint:
    """What a checkpoint holds, read and checked before the run changes anything."""

    path: str
    state: TrainerState
    optimizer: dict | None
    scheduler: dict | None
    scaler: dict | None
    rng: dict | None
    dataloader: dict | None
    loss_window: dict | None
    saved_args: dict | None
    weights_only: bool = False


_OPTIMIZATION = (ckpt.OPTIMIZER_NAME, ckpt.SCHEDULER_NAME, ckpt.SCALER_NAME)


def read_checkpoint(path: str, rank: int, world_size: int, engine_state: bool = False,
                    weights_only: bool = False) -> ResumePoint:
    """Read every resumable part of ``path`` (this rank's RNG and data position included).

    ``engine_state``: the optimizer state is in an engine's own files (DeepSpeed, sharded FSDP),
    restored by the strategy, so ``optimizer.pt`` is not required. ``weights_only``
    (``resume_weights_only``): the optimizer, scheduler and scaler states are not read.
    """
    def optional(name: str, loader):
        full = os.path.join(path, name)
        return loader(full) if os.path.exists(full) and not (weights_only and name in _OPTIMIZATION) else None

    state_path = os.path.join(path, ckpt.TRAINER_STATE_NAME)
    try:
        state = TrainerState.load_from_json(state_path)
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError; TypeError: wrong fields
        raise ValueError(f"{state_path} is damaged ({e}): this checkpoint cannot be resumed") from e
    if not (engine_state or weights_only) and not os.path.exists(os.path.join(path, ckpt.OPTIMIZER_NAME)):
        raise ValueError(
            f"{path} holds no {ckpt.OPTIMIZER_NAME} (saved with save_only_model=True, or the file is lost), so the "
            "optimizer state cannot be restored: set resume_weights_only=True to resume from its weights, step and "
            "schedule position with a fresh optimizer, or resume from a full checkpoint"
        )
    optimizer = optional(ckpt.OPTIMIZER_NAME, lambda p: ckpt.safe_torch_load(p, "the optimizer state"))
    scheduler = optional(ckpt.SCHEDULER_NAME, lambda p: ckpt.safe_torch_load(p, "the scheduler state"))
    scaler = optional(ckpt.SCALER_NAME, lambda p: ckpt.safe_torch_load(p, "the gradient scaler state"))
    rng_name = ckpt.rank_file(ckpt.RNG_NAME, rank, world_size)
    rng = optional(rng_name, lambda p: ckpt.safe_torch_load(p, "the RNG state"))
    if rng is None:
        logger.warning("%s has no %s: RNG states are not restored, the resumed run will not be bit-exact",
                       path, rng_name)
    dataloader = optional(ckpt.rank_file(ckpt.DATALOADER_NAME, rank, world_size),
                          lambda p: ckpt.safe_torch_load(p, "the dataloader state"))
    loss_window = optional(ckpt.LOSS_WINDOW_NAME, _read_json)
    saved_args = optional(ckpt.TRAINING_ARGS_NAME, _read_json)
    return ResumePoint(path, state, optimizer, scheduler, scaler, rng, dataloader, loss_window, saved_args,
                       weights_only)


def earlier_checkpoint(path: str) -> str | None:
    """The newest complete checkpoint saved before the ``checkpoint-N`` folder ``path``, or None."""
    parent, name = os.path.split(os.path.normpath(path))
    step = ckpt.checkpoint_step(name)
    if step is None:
        return None
    earlier = [p for p in ckpt.list_checkpoints(parent) if ckpt.checkpoint_step(os.path.basename(p)) < step]
    return earlier[-1] if earlier else None


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def changed_arguments(saved: dict | None, args) -> dict:
    """``{name: (saved, now)}`` for the trajectory arguments that differ from the checkpoint's."""
    if not saved:
        return {}
    now = args.to_dict()
    return {k: (saved[k], now[k]) for k in TRAJECTORY_ARGS if k in saved and saved[k] != now[k]}


def warn_changed_arguments(saved: dict | None, args, world_size: int) -> dict:
    changed = changed_arguments(saved, args)
    saved_world_size = (saved or {}).get("_world_size")
    if saved_world_size is not None and saved_world_size != world_size:
        changed["world_size"] = (saved_world_size, world_size)
    if changed:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        logger.warning("Resuming with arguments that differ from the checkpoint's (%s): the run continues, but "
                       "will not match the one that was interrupted", listed)
    return changed


def restore_callback_states(stateful: dict, callbacks: list, control) -> None:
    """Put saved ExportableState back into the callbacks of the same class (in order) and the control."""
    for cb in [*callbacks, control]:
        if not isinstance(cb, ExportableState):
            continue
        saved = stateful.get(type(cb).__name__)
        if saved is None:
            continue
        if isinstance(saved, list):  # several callbacks of one class: take them in order
            if not saved:
                continue
            saved = saved.pop(0)
        for key, value in saved.get("attributes", {}).items():
            setattr(cb, key, value)
        if cb is control:
            for key, value in saved.get("args", {}).items():
                setattr(cb, key, value)


def restore_trainer_state(trainer, resume: ResumePoint) -> None:
    """Trainer state and callback states from a checkpoint; this run's sizes and intervals are kept."""
    state = trainer.state
    for name in ("epoch", "global_step", "total_flos", "log_history", "best_metric", "best_global_step",
                 "best_model_checkpoint", "num_input_tokens_seen", "trial_name", "trial_params",
                 "stateful_callbacks"):
        setattr(state, name, getattr(resume.state, name))
    if state.global_step >= state.max_steps:
        logger.warning("The checkpoint is at step %d, max_steps is %d: nothing left to train",
                       state.global_step, state.max_steps)
    warn_changed_arguments(resume.saved_args, trainer.args, trainer.runtime.num_processes)
    restore_callback_states(dict(resume.state.stateful_callbacks), trainer.callback_handler.callbacks,
                            trainer.control)
    trainer.control._new_training()
    trainer.control._new_step()


def restore_optimization(trainer, resume: ResumePoint) -> None:
    """Optimizer (through the engine when it saved its own files), scheduler and gradient-scaler states."""
    strategy = trainer.runtime.strategy
    try:
        if strategy.has_engine_state(resume.path):
            strategy.load_engine_state(resume.path, trainer.model_wrapped, trainer.optimizer)
        if resume.optimizer is not None:
            strategy.load_optimizer_state(trainer.optimizer, resume.optimizer)
    except (ValueError, KeyError) as e:
        raise ValueError(f"the optimizer state in {resume.path} does not fit this model/optimizer "
                         f"({type(trainer.optimizer).__name__}): {e}") from e
    if resume.scheduler is not None and trainer.lr_scheduler is not None:
        trainer.lr_scheduler.load_state_dict(resume.scheduler)
    elif resume.weights_only and trainer.lr_scheduler is not None:
        import warnings

        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(resume.state.global_step):  # the schedule's position, from its start
                trainer.lr_scheduler.step()
        logger.warning("resume_weights_only=True: %s resumed at step %d with a fresh optimizer state",
                       resume.path, resume.state.global_step)
    if resume.scaler is not None and trainer.runtime.scaler is not None:
        trainer.runtime.scaler.load_state_dict(resume.scaler)


def load_resume_point(trainer) -> ResumePoint | None:
    """Read the checkpoint ``train()`` resumes from (None for a new run) and load its weights into the model,
    unless the engine loads them itself after ``prepare``. A damaged file names the earlier checkpoint."""
    path = trainer._resume_path
    if path is None:
        return None
    rt, args = trainer.runtime, trainer.args
    engine_state = rt.strategy.has_engine_state(path)
    if rt.strategy.engine_loads_weights and not engine_state:
        raise ValueError(
            f"resume_from_checkpoint={path!r} holds no {rt.strategy.name} engine state: it was "
            f"saved by a run with another parallel setup; resume it with the same {rt.strategy.argument} settings"
        )
    try:
        resume = read_checkpoint(path, rt.process_index, rt.num_processes, engine_state,
                                 args.resume_weights_only)
        if not rt.strategy.engine_loads_weights:
            ckpt.load_model_weights(trainer.model, path)
    except ValueError as e:  # a damaged file: say which checkpoint still works
        earlier = earlier_checkpoint(path)
        if earlier:
            e.add_note(f"resume from an earlier one: resume_from_checkpoint={earlier!r}")
        raise
    return resume


def prepare_output_dir(trainer) -> None:
    """A new run (no resume) into ``output_dir``: its old checkpoints are refused, or deleted with
    ``overwrite_output_dir``."""
    existing = ckpt.list_checkpoints(trainer.args.output_dir)
    if not existing:
        return
    if not trainer.args.overwrite_output_dir:
        raise ValueError(
            f"output_dir={trainer.args.output_dir!r} already holds checkpoints ({os.path.basename(existing[-1])}...): "
            "pass train(resume_from_checkpoint=True) to continue, set overwrite_output_dir=True to start over, "
            "or choose another output_dir"
        )
    if trainer.is_world_process_zero():
        for path in existing:
            ckpt.delete_checkpoint(path)
    trainer.runtime.wait_for_everyone()
