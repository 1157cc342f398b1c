"""Checkpoint files: names, atomic save, listing, rotation, and loading weights back. What goes into a
checkpoint, and back into a run, is ``checkpointing.py``'s (the orchestrator).

Layout of ``output_dir/checkpoint-{global_step}/`` (Hugging Face file names):
``model.safetensors`` (or the model's ``save_pretrained`` files), ``optimizer.pt``,
``scheduler.pt``, ``scaler.pt`` (fp16), ``rng_state.pth`` (``rng_state_{rank}.pth`` in
distributed runs), ``trainer_state.json``, ``training_args.json``, and ours:
``dataloader_state.pt`` (``_{rank}``: the StatefulDataLoader position) and
``loss_window.json`` (step losses since the last log, so resumed logs are bit-equal).

A checkpoint is written under ``.tmp-checkpoint-{step}``, every file fsynced, then renamed into
place: only a directory with the final name (holding ``trainer_state.json``) is complete.
Deletion renames to ``.tmp-delete-...`` first, so a half-deleted checkpoint never keeps its
name. Loading never unpickles objects: safetensors, JSON, ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import re
import shutil
import tempfile

import numpy as np
import torch

logger = logging.getLogger(__name__)

PREFIX_CHECKPOINT_DIR = "checkpoint"
TMP_PREFIX = ".tmp-"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
SCALER_NAME = "scaler.pt"
TRAINER_STATE_NAME = "trainer_state.json"
TRAINING_ARGS_NAME = "training_args.json"
LOSS_WINDOW_NAME = "loss_window.json"
RNG_NAME = "rng_state.pth"
DATALOADER_NAME = "dataloader_state.pt"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_dir(output_dir: str, global_step: int) -> str:
    return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{global_step}")


def check_output_dir(output_dir: str) -> None:
    """Create ``output_dir`` and prove it writable, before any step is spent: a clear error instead of a
    failure at the first save."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir={output_dir!r} is a file, not a directory: choose another output_dir")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):  # unique across processes and nodes
            pass
    except OSError as e:
        raise ValueError(f"output_dir={output_dir!r} is not writable ({e.strerror or e}): choose a directory this "
                         "process can write to") from e


def checkpoint_step(name: str) -> int | None:
    """N of a ``checkpoint-N`` folder name, else None."""
    match = _CHECKPOINT_RE.match(name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints in ``output_dir``, oldest (lowest step) first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        step = checkpoint_step(name)
        path = os.path.join(output_dir, name)
        if step is not None and os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
            found.append((step, path))
    return [path for _, path in sorted(found)]


def delete_checkpoint(path: str) -> None:
    """Rename out of the checkpoint namespace first, then delete: never a half checkpoint with a final name."""
    parent, name = os.path.split(path)
    doomed = os.path.join(parent, f"{TMP_PREFIX}delete-{name}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_stale_temporaries(output_dir: str) -> None:
    """Delete ``.tmp-*`` directories left by a run killed while saving or deleting."""
    if not os.path.isdir(output_dir):
        return
    for name in os.listdir(output_dir):
        if name.startswith(TMP_PREFIX + PREFIX_CHECKPOINT_DIR) or name.startswith(TMP_PREFIX + "delete-") or \
                name.startswith(TMP_PREFIX + "old-"):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def checkpoints_to_delete(checkpoints: list[str], limit: int | None, keep: set[str]) -> list[str]:
    """Oldest checkpoints beyond ``limit``, never the newest nor any in ``keep`` (the best, the one just saved)."""
    if limit is None or len(checkpoints) <= limit:
        return []
    protected = {os.path.abspath(p) for p in keep if p} | {os.path.abspath(checkpoints[-1])}
    deletable = [c for c in checkpoints if os.path.abspath(c) not in protected]
    return deletable[: len(checkpoints) - limit]


def rotate_checkpoints(output_dir: str, limit: int | None, keep: set[str], earlier: frozenset = frozenset()) -> list[str]:
    """Delete the checkpoints beyond ``save_total_limit``, never one in ``keep`` (the best ones, the one just
    saved). Deleting one of ``earlier`` (left in output_dir by an earlier run) is said in a warning."""
    deleted = checkpoints_to_delete(list_checkpoints(output_dir), limit, keep)
    for path in deleted:
        if os.path.abspath(path) in earlier:
            logger.warning("Deleting %s, left in output_dir by an earlier run (save_total_limit=%s)", path, limit)
        else:
            logger.info("Deleting older checkpoint %s (save_total_limit=%s)", path, limit)
        delete_checkpoint(path)
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


def save_model_files(model: torch.nn.Module, directory: str, processing_class=None, args=None,
                     state_dict: dict | None = None, weights: bool = True) -> None:
    """Weights (``save_pretrained`` or ``model.safetensors``), the processing class and the args.

    ``state_dict``: the full weights gathered by a sharding engine, written instead of the model's own;
    ``weights=False``: no weights file (the engine's own checkpoint files hold them).
    """
    os.makedirs(directory, exist_ok=True)
    if not weights:
        logger.info("No weights file in %s: the engine's checkpoint files hold the weights", directory)
    elif hasattr(model, "save_pretrained"):
        from integrations.deepspeed import not_imported_by_save_pretrained

        not_imported_by_save_pretrained()
        model.save_pretrained(directory, safe_serialization=True, state_dict=state_dict)
    elif state_dict is not None:
        from safetensors.torch import save_file

        save_file(_without_shared(state_dict), os.path.join(directory, WEIGHTS_NAME), metadata={"format": "pt"})
    else:
        from safetensors.torch import save_model

        save_model(model, os.path.join(directory, WEIGHTS_NAME), metadata={"format": "pt"})  # handles tied weights
    if processing_class is not None and hasattr(processing_class, "save_pretrained"):
        processing_class.save_pretrained(directory)
    if args is not None:
        write_json(os.path.join(directory, TRAINING_ARGS_NAME), {**args.to_dict(), "_world_size": args.world_size})


def _without_shared(state_dict: dict) -> dict:
    """Tensors safetensors accepts: a tied weight once (under its first name), views into a larger
    buffer (ZeRO's flat parameter groups) copied out."""
    seen, out = set(), {}
    for name, tensor in state_dict.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        tensor = tensor.detach()
        whole = tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        out[name] = tensor if whole else tensor.clone()
    return out


def rank_file(name: str, rank: int, world_size: int) -> str:
    """``rng_state.pth`` in a single process, ``rng_state_{rank}.pth`` in distributed runs."""
    if world_size <= 1:
        return name
    stem, ext = os.path.splitext(name)
    return f"{stem}_{rank}{ext}"


def rng_state() -> dict:
    """The RNG states of python, numpy and torch (CPU and every CUDA device), as plain tensors and lists."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Put back :func:`rng_state`'s states, or those of a transformers checkpoint (python's and numpy's state as
    their own tuples)."""
    py = state["python"]
    random.setstate(py if isinstance(py, tuple) else (py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(npy if isinstance(npy, tuple) else (
        npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning("The checkpoint has CUDA RNG states for %d devices, this machine has %d: not restored",
                           len(cuda_states), torch.cuda.device_count())


def numpy_array_globals() -> list:
    """What ``torch.load(weights_only=True)`` must be allowed to rebuild numpy arrays (the RNG states in a transformers
    checkpoint): the array reconstructor, ndarray and dtypes, nothing that runs code."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64)]
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def torch_save(state, path: str) -> None:
    """``torch.save`` without the zip archive's CRC32 of every record (torch >= 2.6 can leave it out): computing it
    costs more than writing the bytes (800 MB of Adam state: 0.2 s without, 0.7 to 2 s with), and a checkpoint is
    protected otherwise: every file fsynced before the folder is renamed into place, a truncated file refused."""
    try:
        from torch.utils.serialization import config
    except ImportError:  # torch < 2.6
        config = None
    if config is None or not hasattr(getattr(config, "save", None), "compute_crc32"):
        torch.save(state, path)
        return
    with config.patch({"save.compute_crc32": False}):
        torch.save(state, path)


def safe_torch_load(path: str, what: str, allowed: list | tuple = ()):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects; ``allowed``
    lists the classes (and functions) that may be rebuilt besides: the numpy array reconstructor of a
    transformers RNG file, the projector objects a GaLore/APOLLO optimizer state holds."""
    import pickle

    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError) as e:
        if isinstance(e, EOFError) or any(s in str(e) for s in ("zip archive", "central directory", "Stream")):
            raise ValueError(f"{path} is damaged or truncated ({str(e).splitlines()[0] or 'end of file'}): "
                             f"{what} cannot be read") from e
        raise _refused(path, what, e) from e
    except (pickle.UnpicklingError, AttributeError, TypeError, ValueError) as e:
        raise _refused(path, what, e) from e


def _refused(path: str, what: str, e: Exception) -> ValueError:
    return ValueError(
        f"refusing to load {what} from {path}: it holds more than tensors and plain containers "
        f"(weights_only load failed: {str(e).splitlines()[0]}). A checkpoint written by this Trainer never does; "
        "the file may have been tampered with or written by other code"
    )


def temporary_dir(directory: str) -> str:
    """Where the checkpoint ``directory`` is written before its rename into place."""
    parent, name = os.path.split(directory)
    return os.path.join(parent, TMP_PREFIX + name)


def begin_checkpoint(directory: str) -> str:
    """Create (empty) the temporary directory a checkpoint is written into; returns it."""
    tmp = temporary_dir(directory)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def finish_checkpoint(tmp: str, directory: str) -> str:
    """fsync everything, then rename into place (replacing a checkpoint of the same step)."""
    parent, name = os.path.split(directory)
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


_NEARLY_FULL = 64 * 2**20  # bytes free after a failed write below which the disk counts as full


def _disk_full(error: Exception, directory: str) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(error):  # safetensors' error
        return True
    try:  # torch.save reports a full disk as "unexpected pos ..." with no errno
        return shutil.disk_usage(directory).free < _NEARLY_FULL
    except OSError:
        return False


@contextlib.contextmanager
def write_guard(tmp: str, path: str):
    """A write into the temporary folder that fails: remove the partial folder, so no ``.tmp-checkpoint-*`` is
    left behind, and say so in a note on the error. On a full disk (the space is given back) raise
    ``OSError(ENOSPC)`` naming the checkpoint and the ones still intact."""
    try:
        yield
    except Exception as e:
        parent = os.path.dirname(path)
        full = _disk_full(e, parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if not full:
            e.add_note(f"the save of {path} was abandoned and its partial files removed; the checkpoints written "
                       "before are intact")
            raise
        kept = ", ".join(os.path.basename(p) for p in list_checkpoints(parent)) or "none"
        raise OSError(errno.ENOSPC, f"the disk is full: no space left on device while writing {path} "
                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). The save was abandoned and "
                      f"its partial files removed; the checkpoints written before are intact ({kept}). Free space, "
                      "lower save_total_limit or set save_only_model=True, then resume") from e


def save_final_model(trainer, output_dir: str) -> None:
    """``save_model``'s files: the full weights gathered by the engine (a collective on every process), written
    by the main process with the processing class and the args; the engine's own files where it has no weights
    file to write."""
    strategy = trainer.runtime.strategy
    state_dict = strategy.model_state_dict(trainer.model_wrapped, final=True)  # collective under ZeRO-3 / FSDP
    weights = strategy.writes_weights_file(final=True)
    if not weights:  # e.g. ZeRO-3 without stage3_gather_16bit_weights_on_model_save: partitions only
        logger.warning("save_model: %s", strategy.no_weights_file_note(output_dir))
        if trainer.is_world_process_zero():
            os.makedirs(output_dir, exist_ok=True)
        trainer.runtime.wait_for_everyone()
        strategy.save_engine_state(output_dir, trainer.state.global_step)
    if trainer.is_world_process_zero():
        save_model_files(trainer.runtime.unwrap(trainer.model_wrapped), output_dir, trainer.processing_class,
                         trainer.args, state_dict=state_dict, weights=weights)
    trainer.runtime.wait_for_everyone()


# -- reading ------------------------------------------------------------------------------
def load_model_weights(model: torch.nn.Module, directory: str) -> None:
    """Load the weights saved in ``directory`` into ``model`` (safetensors, sharded or not; no pickle)."""
    from safetensors.torch import load_model

    from .adapters import has_adapter_files, is_peft_model, load_adapters

    if is_peft_model(model) and has_adapter_files(directory):  # a PEFT model's checkpoint holds its adapters only
        load_adapters(model, directory)
        return
    path = os.path.join(directory, WEIGHTS_NAME)
    index = os.path.join(directory, WEIGHTS_INDEX_NAME)
    if os.path.exists(path):
        from safetensors import SafetensorError

        try:
            missing, unexpected = load_model(model, path, strict=False)
        except RuntimeError as e:  # shapes differ
            raise ValueError(f"the weights in {path} do not fit {type(model).__name__}: {e}") from e
        except SafetensorError as e:  # truncated or overwritten
            raise ValueError(f"{path} is damaged or truncated ({e}): its weights cannot be read") from e
    elif os.path.exists(index):  # save_pretrained split a large model into shards
        state = read_model_weights(directory)
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise ValueError(f"the weights in {index} do not fit {type(model).__name__}: {e}") from e
        tied = _tied_names(model)
        missing = [k for k in result.missing_keys if k not in tied]
        unexpected = result.unexpected_keys
        path = index
    else:
        raise FileNotFoundError(
            f"{directory} has no {WEIGHTS_NAME} (nor {WEIGHTS_INDEX_NAME}); it is not a checkpoint written by this "
            f"Trainer (files: {sorted(os.listdir(directory)) if os.path.isdir(directory) else 'directory missing'})"
        )
    if missing or unexpected:
        raise ValueError(
            f"the weights in {path} do not fit {type(model).__name__}: missing keys {sorted(missing)}, "
            f"unexpected keys {sorted(unexpected)}"
        )


def read_model_weights(directory: str) -> dict:
    """The weights saved in ``directory`` as a state dict (one safetensors file or its shards)."""
    from safetensors.torch import load_file

    path = os.path.join(directory, WEIGHTS_NAME)
    if os.path.exists(path):
        return load_file(path)
    index = os.path.join(directory, WEIGHTS_INDEX_NAME)
    if not os.path.exists(index):
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME} (nor {WEIGHTS_INDEX_NAME})")
    with open(index, encoding="utf-8") as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    state = {}
    for shard in shards:
        state.update(load_file(os.path.join(directory, shard)))
    return state


def _tied_names(model: torch.nn.Module) -> set[str]:
    """Parameter names that share storage with an earlier parameter (saved once, under the first name)."""
    seen, tied = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = (tensor.data_ptr(), tensor.shape) if tensor.numel() else None
        if key is not None and key in seen:
            tied.add(name)
        elif key is not None:
            seen[key] = name
    return tied


def load_trained_weights(trainer, path: str) -> None:
    """Weights of checkpoint ``path`` into the model being trained: through the engine when it wrote its own
    files or sharded the model, else from the weights file."""
    strategy = trainer.runtime.strategy
    if strategy.has_engine_state(path):  # DeepSpeed, sharded FSDP: the engine reads its own files
        strategy.load_engine_state(path, trainer.model_wrapped, trainer.optimizer, load_optimizer=False)
        return
    if strategy.is_engine and strategy.load_full_state_dict(trainer.model_wrapped, read_model_weights(path)):
        return  # FSDP: the full weights scattered into the shards
    load_model_weights(trainer.model, path)
