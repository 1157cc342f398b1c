"""Resuming, around the checkpoint itself: which checkpoint to resume, the arguments that changed since it
was saved, the states of the callbacks, and what a new run does with the checkpoints already in output_dir.

``resume_from_checkpoint`` takes a path, ``True`` (the newest complete checkpoint in
``output_dir``; an error if there is none) or ``"auto"`` (the newest if any, else a fresh start).
Reading and restoring the checkpoint's parts is ``checkpointing.py``'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from callbacks import ExportableState

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


def earlier_checkpoint(path: str) -> str | None:
    """The newest complete checkpoint saved before the ``checkpoint-N`` folder ``path``, or None."""
    parent, name = os.path.split(os.path.normpath(path))
    step = ckpt.checkpoint_step(name)
    if step is None:
        return None
    earlier = [p for p in ckpt.list_checkpoints(parent) if ckpt.checkpoint_step(os.path.basename(p)) < step]
    return earlier[-1] if earlier else None


def changed_arguments(saved: dict | None, args) -> dict:
    """``{name: (saved, now)}`` for the trajectory arguments that differ from the checkpoint's."""
    if not saved:
        return {}
    now = args.to_dict()
    return {k: (saved[k], now[k]) for k in TRAJECTORY_ARGS if k in saved and saved[k] != now[k]}


def saved_train_batch_size(path: str) -> int | None:
    """The batch size per device the run that saved ``path`` trained with (``auto_find_batch_size`` may
    have settled on less than the arguments ask), from its ``trainer_state.json``."""
    try:
        with open(os.path.join(path, ckpt.TRAINER_STATE_NAME), encoding="utf-8") as f:
            size = json.load(f).get("train_batch_size")
    except (OSError, ValueError):
        return None  # the checkpoint's own read names what is wrong with it
    return size if isinstance(size, int) and size > 0 else None


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


@dataclasses.dataclass(frozen=True)
class EarlierRun:
    """The checkpoints an earlier run left in ``output_dir`` when a new one starts there, and its best."""

    checkpoints: frozenset = frozenset()
    best: tuple = ()


def prepare_output_dir(trainer) -> EarlierRun:
    """A new run (no resume) into ``output_dir``. Its old checkpoints are deleted with ``overwrite_output_dir``;
    else, as transformers 5 does (a notebook cell run again), the run goes on beside them with a warning,
    and rotation keeps the earlier run's best checkpoint and says when it deletes one of the others."""
    existing = ckpt.list_checkpoints(trainer.args.output_dir)
    if not existing:
        return EarlierRun()
    if trainer.args.overwrite_output_dir:
        if trainer.is_world_process_zero():
            for path in existing:
                ckpt.delete_checkpoint(path)
        trainer.runtime.wait_for_everyone()
        return EarlierRun()
    logger.warning(
        "output_dir=%r already holds checkpoints of an earlier run (%s): this run starts over beside them, as "
        "resume_from_checkpoint was not given; a checkpoint of the same step is replaced, and "
        "resume_from_checkpoint=True picks the highest step, whichever run wrote it. Pass "
        "resume_from_checkpoint=True to continue that run, or overwrite_output_dir=True to delete them first",
        trainer.args.output_dir, ", ".join(os.path.basename(p) for p in existing))
    best = _best_of(existing[-1])
    return EarlierRun(frozenset(os.path.abspath(p) for p in existing), (best,) if best else ())


def _best_of(checkpoint: str) -> str | None:
    try:
        with open(os.path.join(checkpoint, ckpt.TRAINER_STATE_NAME), encoding="utf-8") as f:
            return json.load(f).get("best_model_checkpoint")
    except (OSError, ValueError):
        return None
