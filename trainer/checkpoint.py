"""Checkpoint files: atomic save, listing, rotation, and loading weights back.

Layout of ``output_dir/checkpoint-{global_step}/`` (Hugging Face file names):
``model.safetensors`` (or the model's ``save_pretrained`` files), ``optimizer.pt``,
``scheduler.pt``, ``scaler.pt`` (fp16), ``rng_state.pth``, ``trainer_state.json``,
``training_args.json``. A checkpoint is written under ``.tmp-checkpoint-{step}``, every file
fsynced, then renamed into place: only a directory with the final name is complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil

import numpy as np
import torch

logger = logging.getLogger(__name__)

PREFIX_CHECKPOINT_DIR = "checkpoint"
TMP_PREFIX = ".tmp-"
WEIGHTS_NAME = "model.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
SCALER_NAME = "scaler.pt"
TRAINER_STATE_NAME = "trainer_state.json"
TRAINING_ARGS_NAME = "training_args.json"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_dir(output_dir: str, global_step: int) -> str:
    return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{global_step}")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints in ``output_dir``, oldest (lowest step) first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_RE.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found)]


def checkpoints_to_delete(checkpoints: list[str], limit: int | None, keep: set[str]) -> list[str]:
    """Oldest checkpoints beyond ``limit``, never the newest nor any in ``keep`` (the best)."""
    if limit is None or len(checkpoints) <= limit:
        return []
    protected = {os.path.abspath(p) for p in keep if p} | {os.path.abspath(checkpoints[-1])}
    deletable = [c for c in checkpoints if os.path.abspath(c) not in protected]
    return deletable[: len(checkpoints) - limit]


def rotate_checkpoints(output_dir: str, limit: int | None, best_checkpoint: str | None) -> list[str]:
    deleted = checkpoints_to_delete(list_checkpoints(output_dir), limit, {best_checkpoint} if best_checkpoint else set())
    for path in deleted:
        logger.info("Deleting older checkpoint %s (save_total_limit=%s)", path, limit)
        shutil.rmtree(path, ignore_errors=True)
    return deleted


# -- writing ------------------------------------------------------------------------------
def _fsync_tree(path: str) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(root)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_model_files(model: torch.nn.Module, directory: str, processing_class=None, args=None) -> None:
    """Weights (``save_pretrained`` or ``model.safetensors``), the processing class and the args."""
    os.makedirs(directory, exist_ok=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(directory, safe_serialization=True)
    else:
        from safetensors.torch import save_model

        save_model(model, os.path.join(directory, WEIGHTS_NAME))  # handles tied/shared weights
    if processing_class is not None and hasattr(processing_class, "save_pretrained"):
        processing_class.save_pretrained(directory)
    if args is not None:
        write_json(os.path.join(directory, TRAINING_ARGS_NAME), args.to_dict())


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(directory: str, *, model, optimizer, scheduler, scaler, state, args, processing_class=None,
                    save_only_model: bool = False) -> str:
    """Write a complete checkpoint at ``directory`` atomically; returns ``directory``."""
    parent, name = os.path.split(directory)
    tmp = os.path.join(parent, TMP_PREFIX + name)
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_files(model, tmp, processing_class, args)
    if not save_only_model:
        torch.save(optimizer.state_dict(), os.path.join(tmp, OPTIMIZER_NAME))
        if scheduler is not None:
            torch.save(scheduler.state_dict(), os.path.join(tmp, SCHEDULER_NAME))
        if scaler is not None:
            torch.save(scaler.state_dict(), os.path.join(tmp, SCALER_NAME))
        torch.save(rng_state(), os.path.join(tmp, "rng_state.pth"))
    state.save_to_json(os.path.join(tmp, TRAINER_STATE_NAME))
    _fsync_tree(tmp)
    if os.path.exists(directory):  # saved again at the same step: swap the old one out
        old = os.path.join(parent, TMP_PREFIX + "old-" + name)
        os.rename(directory, old)
        os.rename(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, directory)
    _fsync_dir(parent)
    return directory


# -- reading ------------------------------------------------------------------------------
def load_model_weights(model: torch.nn.Module, directory: str) -> None:
    """Load the weights saved in ``directory`` into ``model`` (safetensors; no pickle)."""
    from safetensors.torch import load_model

    path = os.path.join(directory, WEIGHTS_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{directory} has no {WEIGHTS_NAME}; it is not a checkpoint written by this Trainer "
            f"(files: {sorted(os.listdir(directory)) if os.path.isdir(directory) else 'directory missing'})"
        )
    missing, unexpected = load_model(model, path, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the weights in {path} do not fit {type(model).__name__}: missing keys {sorted(missing)}, "
            f"unexpected keys {sorted(unexpected)}"
        )
