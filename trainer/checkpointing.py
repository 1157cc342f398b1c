"""The checkpoint orchestrator: the one place that saves a training run and puts it back.

A run's resumable state is a list of parts, each registered once with ``Checkpointer.register``: an object
with a file name, ``state_dict()`` and ``load_state_dict(state)``. ``save()`` takes every part's state and
writes the files; ``read()`` reads them all back (checked, before anything changes) and ``restore()`` hands
each part its state, in the order the parts were registered. The model is the exception: its weights are
written by ``save_model_files`` (or the engine) and loaded before the engine wraps the model
(``restore_weights``), while the engine's own files are written and loaded by the strategy.

| part (owner)                    | file                          | written by   | saved with save_only_model | read with resume_weights_only |
|---------------------------------|-------------------------------|--------------|----|----|
| ``TrainerStatePart`` (Trainer)  | ``trainer_state.json``        | main, last   | yes | yes |
| ``OptimizerPart`` (Trainer)     | ``optimizer.pt``              | main         | no  | no  |
| ``SchedulerPart`` (Trainer)     | ``scheduler.pt``              | main         | no  | no  |
| ``ScalerPart`` (Runtime)        | ``scaler.pt``                 | main         | no  | no  |
| ``LossWindowPart`` (the loop)   | ``loss_window.json``          | main         | no  | yes |
| ``RngPart`` (the loop)          | ``rng_state[_{rank}].pth``    | every process | no | yes |
| ``DataPositionPart`` (the loop) | ``dataloader_state[_{rank}].pt`` | every process | no | yes |

A checkpoint is written atomically (``checkpoint.py``: a temporary folder, fsynced, renamed into place); with
``save_async`` the main process's files are written from host copies by a background thread. Nothing is
unpickled on the way back: JSON and ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from callbacks import TrainerState

from . import checkpoint as ckpt
from .optimizers_external import RESUME_CAVEATS, optimizer_state_classes
from .resume import earlier_checkpoint, restore_callback_states, warn_changed_arguments

logger = logging.getLogger(__name__)


class Part:
    """A resumable component of a run and the file it lives in."""

    file: str = ""
    what: str = ""  # for messages: "the optimizer state"
    per_rank = False  # every process writes its own (``name_{rank}.ext`` in distributed runs)
    json = False  # JSON rather than torch.save
    training_state = True  # left out by save_only_model
    optimization = False  # not read back with resume_weights_only

    def state_dict(self) -> Any:
        """The state to save now; None: nothing to write."""
        raise NotImplementedError

    def load_state_dict(self, state: Any) -> None:
        raise NotImplementedError

    def missing(self, checkpoint: Checkpoint, file: str) -> None:
        """At ``read``: the checkpoint has no ``file`` for this part. Raise if it cannot be resumed without it."""

    def absent(self, checkpoint: Checkpoint) -> None:
        """At ``restore``: the checkpoint had no file for this part (an older or a partial checkpoint)."""

    def check(self, checkpoint: Checkpoint, state: Any) -> None:
        """At ``restore``, for every part before any is loaded: raise if ``state`` cannot go into this run."""

    def file_name(self, rank: int, world_size: int) -> str:
        return ckpt.rank_file(self.file, rank, world_size) if self.per_rank else self.file

    def write(self, path: str, state: Any) -> None:
        if self.json:
            ckpt.write_json(path, state)
        else:
            ckpt.torch_save(state, path)

    def read(self, path: str) -> Any:
        if self.json:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        return ckpt.safe_torch_load(path, self.what)


@dataclass
class Checkpoint:
    """A checkpoint read back: every part's state, checked, nothing restored yet."""

    path: str
    states: dict[str, Any] = field(default_factory=dict)  # part file (this rank's) -> state
    engine_state: bool = False  # the engine's own files are there (DeepSpeed, sharded FSDP)
    weights_only: bool = False  # resume_weights_only: no optimizer, scheduler or scaler state
    saved_args: dict | None = None

    @property
    def state(self) -> TrainerState:
        return self.states[ckpt.TRAINER_STATE_NAME]

    @property
    def stopped_by_a_callback(self) -> bool:
        """The saved ``TrainerControl`` had ``should_training_stop`` set before the run's ``max_steps``: a callback
        (early stopping) ended the run there. A stop at its own ``max_steps`` is not one: a run given more steps
        goes on from it."""
        saved = self.state.stateful_callbacks.get("TrainerControl") or {}
        if isinstance(saved, list):
            saved = saved[0] if saved else {}
        stopped = bool(saved.get("args", {}).get("should_training_stop"))
        return stopped and self.state.global_step < self.state.max_steps


class Checkpointer:
    """Saves and restores the registered parts of a run (see the module docstring)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.parts: list[Part] = []
        self.loop_parts: list[Part] = []

    def register(self, part: Part) -> None:
        self.parts.append(part)

    def attach_loop(self, parts: list[Part]) -> None:
        """The parts of the training loop now running (they replace an earlier loop's)."""
        self.loop_parts = list(parts)

    def all_parts(self) -> list[Part]:
        return self.parts + self.loop_parts

    # -- save -----------------------------------------------------------------------------
    def save(self) -> str:
        """Write ``checkpoint-{global_step}`` atomically, then rotate; returns its path.

        The writer (main process, or each node's main with ``save_on_each_node``) writes the shared files
        into a temporary directory; every process adds its own files and the engine's; the writer fsyncs
        and renames the directory into place. Barriers separate the three phases.
        """
        trainer = self.trainer
        args, rt, state = trainer.args, trainer.runtime, trainer.state
        trainer.checkpoint_writer.wait()  # one save in flight at most
        path = ckpt.checkpoint_dir(args.output_dir, state.global_step)
        if state.best_global_step == state.global_step:
            state.best_model_checkpoint = path
        parts = [p for p in self.all_parts() if not (args.save_only_model and p.training_state)]
        strategy = rt.strategy
        # every process takes the states now, in the same order (the sharding engines' are collectives)
        model_state = strategy.model_state_dict(trainer.model_wrapped)
        shared = {p: p.state_dict() for p in parts if not p.per_rank}
        own = {p: p.state_dict() for p in parts if p.per_rank}
        writer = rt.is_local_main_process if args.save_on_each_node else rt.is_main_process
        tmp = ckpt.temporary_dir(path)
        if writer:
            model = rt.unwrap(trainer.model_wrapped)
            os.makedirs(args.output_dir, exist_ok=True)
            ckpt.remove_stale_temporaries(args.output_dir)
            ckpt.begin_checkpoint(path)
            if args.save_async:  # copies of this step's state; training goes on while they are written
                from .async_save import host_copy

                staging = trainer.checkpoint_writer.staging  # the last save's buffers (it is written: waited above)
                model_state = host_copy(model_state if model_state is not None else model.state_dict(), staging,
                                        ("model",))
                shared = host_copy(shared, staging, ("shared",))
            files = MainFiles(model=model, model_state=model_state, weights=strategy.writes_weights_file(),
                              states=shared, processing_class=trainer.processing_class, args=args)
            if not args.save_async:
                with ckpt.write_guard(tmp, path):
                    write_main_files(tmp, files)
        rt.wait_for_everyone()
        if not args.save_only_model:
            with ckpt.write_guard(tmp, path):
                strategy.save_engine_state(tmp, state.global_step)  # every process writes its share
                write_rank_files(tmp, own, rt.process_index, rt.num_processes)
        rt.wait_for_everyone()
        if writer:
            # as of this step (the background rotation must not see a later best); an earlier run's best is kept too
            keep = {state.best_model_checkpoint, path, *trainer._earlier_run.best}

            def finish() -> None:
                with ckpt.write_guard(tmp, path):
                    if args.save_async:
                        write_main_files(tmp, files)
                    ckpt.finish_checkpoint(tmp, path)
                ckpt.rotate_checkpoints(args.output_dir, args.save_total_limit, keep, trainer._earlier_run.checkpoints)

            if args.save_async:
                trainer.checkpoint_writer.submit(path, finish)
            else:
                finish()
        if not args.save_async:
            rt.wait_for_everyone()
        return path

    # -- restore --------------------------------------------------------------------------
    def read(self, path: str) -> Checkpoint:
        """Every part's state from ``path`` (this process's own files included), checked before anything
        changes; a damaged file names the intact checkpoint before it."""
        trainer = self.trainer
        rt, args = trainer.runtime, trainer.args
        strategy = rt.strategy
        with _naming_the_earlier_checkpoint(path):
            checkpoint = Checkpoint(path, engine_state=strategy.has_engine_state(path),
                                    weights_only=args.resume_weights_only)
            if strategy.engine_loads_weights and not checkpoint.engine_state:
                raise ValueError(
                    f"resume_from_checkpoint={path!r} holds no {strategy.name} engine state: it was saved by a run "
                    f"with another parallel setup; resume it with the same {strategy.argument} settings"
                )
            for part in self.all_parts():
                if checkpoint.weights_only and part.optimization:
                    continue
                full = os.path.join(path, part.file_name(rt.process_index, rt.num_processes))
                if os.path.exists(full):
                    checkpoint.states[part.file] = part.read(full)
                else:
                    part.missing(checkpoint, os.path.basename(full))
            saved_args = os.path.join(path, ckpt.TRAINING_ARGS_NAME)
            if os.path.exists(saved_args):
                with open(saved_args, encoding="utf-8") as f:
                    checkpoint.saved_args = json.load(f)
        return checkpoint

    def restore_weights(self, checkpoint: Checkpoint) -> None:
        """The saved weights into the model, before the engine wraps it (an engine that loads its own
        files does it in ``restore``)."""
        if not self.trainer.runtime.strategy.engine_loads_weights:
            with _naming_the_earlier_checkpoint(checkpoint.path):
                ckpt.load_model_weights(self.trainer.model, checkpoint.path)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Every part's state back, in the order the parts were registered; after the engine has prepared
        the model and the optimizer. A part without a file is told (``absent``)."""
        trainer = self.trainer
        warn_changed_arguments(checkpoint.saved_args, trainer.args, trainer.runtime.num_processes)
        if checkpoint.engine_state:
            _optimizer_errors(trainer, checkpoint.path, lambda: trainer.runtime.strategy.load_engine_state(
                checkpoint.path, trainer.model_wrapped, trainer.optimizer))
        for part in self.all_parts():
            if checkpoint.states.get(part.file) is not None:
                part.check(checkpoint, checkpoint.states[part.file])
        for part in self.all_parts():
            state = checkpoint.states.get(part.file)
            if state is not None:
                part.load_state_dict(state)
            else:
                part.absent(checkpoint)


@dataclass
class MainFiles:
    """What the writer process puts into a checkpoint: the model's files, then the shared parts."""

    model: Any
    model_state: dict | None
    weights: bool
    states: dict  # Part -> state
    processing_class: Any
    args: Any


def write_main_files(tmp: str, files: MainFiles) -> None:
    """The model's files (weights, processing class, args), then each shared part; ``trainer_state.json``
    last."""
    ckpt.save_model_files(files.model, tmp, files.processing_class, files.args, state_dict=files.model_state,
                          weights=files.weights)
    ordered = sorted(files.states.items(), key=lambda item: isinstance(item[0], TrainerStatePart))
    for part, state in ordered:
        if state is not None:
            part.write(os.path.join(tmp, part.file), state)


def write_rank_files(tmp: str, states: dict, rank: int, world_size: int) -> None:
    """This process's own parts (its RNG streams and data position)."""
    for part, state in states.items():
        if state is not None:
            part.write(os.path.join(tmp, part.file_name(rank, world_size)), state)


@contextlib.contextmanager
def _naming_the_earlier_checkpoint(path: str):
    """A damaged checkpoint's error (a ValueError) gets a note naming the intact checkpoint saved before it."""
    try:
        yield
    except ValueError as e:
        earlier = earlier_checkpoint(path)
        if earlier:
            e.add_note(f"resume from an earlier one: resume_from_checkpoint={earlier!r}")
        raise


def _unwritable(value, where: str = "state"):
    """The first place in ``value`` that JSON cannot write, and what is there; ``(None, None)`` if none."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unwritable(item, f"{where}[{key!r}]")
            if found[0] is not None:
                return found
        return None, None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unwritable(item, f"{where}[{index}]")
            if found[0] is not None:
                return found
        return None, None
    if value is None or isinstance(value, (str, int, float, bool)):
        return None, None
    return where, value


def _optimizer_errors(trainer, path: str, load) -> None:
    try:
        load()
    except (ValueError, KeyError) as e:
        raise ValueError(f"the optimizer state in {path} does not fit this model/optimizer "
                         f"({type(trainer.optimizer).__name__}): {e}") from e


def optimizer_mismatch(saved, optimizer, saved_args: dict | None, args, from_args: bool = True) -> str | None:
    """Why the optimizer state ``saved`` does not fit ``optimizer``, or None. The optimizer built from the same
    ``optim`` it was saved by fits (some add group keys as they step). Otherwise a state fits when its parameter
    groups hold no hyperparameter this optimizer lacks: a newer torch adds keys to an optimizer (its defaults fill
    them), another optimizer has keys of its own. ``from_args``: the optimizer was built from ``args.optim``."""
    saved_optim = (saved_args or {}).get("optim")
    if from_args and saved_optim == args.optim:
        return None
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    current = getattr(optimizer, "param_groups", None)
    if not groups or not current or not all(isinstance(g, dict) for g in groups):
        return None
    known = set().union(*(g.keys() for g in current))
    foreign = sorted(set().union(*(g.keys() for g in groups)) - known)
    if not foreign:
        return None
    ours = type(getattr(optimizer, "optimizer", optimizer)).__name__  # an engine's wrapper holds the torch one
    if saved_optim and saved_optim != args.optim:
        by = f"optim={saved_optim!r}"
        fix = f"resume with optim={saved_optim!r} as it was saved"
    else:
        by = "another optimizer"
        fix = "resume with the optimizer it was saved with"
    return (f"the optimizer state was saved by {by} (its hyperparameters {foreign} are not {ours}'s), and this run "
            f"builds {ours} (optim={args.optim!r}): {fix}, or set resume_weights_only=True to keep the weights, step "
            f"and schedule and start {ours} afresh")


# -- the Trainer's parts ------------------------------------------------------------------
class TrainerStatePart(Part):
    """``TrainerState`` with the states of the stateful callbacks and of ``TrainerControl``."""

    file, what, json, training_state = ckpt.TRAINER_STATE_NAME, "the trainer state", True, False
    RESTORED = ("epoch", "global_step", "total_flos", "log_history", "best_metric", "best_global_step",
                "best_model_checkpoint", "num_input_tokens_seen", "trial_name", "trial_params", "stateful_callbacks")

    def __init__(self, trainer):
        self.trainer = trainer

    def state_dict(self) -> TrainerState:
        trainer = self.trainer
        trainer.state.record_callback_states(trainer.callback_handler.callbacks + [trainer.control])
        return trainer.state

    def write(self, path: str, state: TrainerState) -> None:
        try:
            text = state.to_json_string()
        except TypeError as e:  # a value json cannot write, most often a metric logged as an array or object
            where, value = _unwritable(dataclasses.asdict(state))
            raise TypeError(
                f"trainer_state.json cannot hold {where} = {value!r} (a {type(value).__module__}."
                f"{type(value).__qualname__}): log and return plain numbers, strings, lists or dicts (e.g. "
                "float(x) or x.tolist()) from compute_metrics and in trainer.log()"
            ) from e
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def missing(self, checkpoint: Checkpoint, file: str) -> None:
        raise ValueError(f"{checkpoint.path} has no {file}: it is not a complete checkpoint")

    def read(self, path: str) -> TrainerState:
        try:
            return TrainerState.load_from_json(path)
        except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError; TypeError: wrong fields
            raise ValueError(f"{path} is damaged ({e}): this checkpoint cannot be resumed") from e

    def load_state_dict(self, saved: TrainerState) -> None:
        """The saved progress and records; this run's sizes and intervals are kept."""
        trainer = self.trainer
        state = trainer.state
        for name in self.RESTORED:
            setattr(state, name, getattr(saved, name))
        callbacks = trainer.callback_handler.callbacks if trainer.args.restore_callback_states_from_checkpoint else []
        restore_callback_states(dict(saved.stateful_callbacks), callbacks, trainer.control)
        trainer.control._new_training()
        trainer.control._new_step()


class OptimizerPart(Part):
    """The optimizer, through the engine (a full state gathered from the shards where it shards them)."""

    file, what, optimization = ckpt.OPTIMIZER_NAME, "the optimizer state", True

    def __init__(self, trainer):
        self.trainer = trainer

    def state_dict(self):
        return self.trainer.runtime.strategy.optimizer_state_dict(self.trainer.optimizer)  # collective

    def missing(self, checkpoint: Checkpoint, file: str) -> None:
        if not checkpoint.engine_state:  # an engine keeps the optimizer in its own files
            raise ValueError(
                f"{checkpoint.path} holds no {file} (saved with save_only_model=True, or the file is lost), so the "
                "optimizer state cannot be restored: set resume_weights_only=True to resume from its weights, step "
                "and schedule position with a fresh optimizer, or resume from a full checkpoint"
            )

    def check(self, checkpoint: Checkpoint, state) -> None:
        """The saved state is another optimizer's (hyperparameters this one does not have, such as SGD's
        ``momentum`` in an Adam state): torch would load it and fail at the first step with a bare KeyError."""
        trainer = self.trainer
        message = optimizer_mismatch(state, trainer.optimizer, checkpoint.saved_args, trainer.args,
                                     from_args=not trainer._user_optimizer)
        if message:
            raise ValueError(f"{checkpoint.path}: {message}")

    def read(self, path: str):
        """The state, with the objects the optimizer of ``optim`` keeps in it allowed (GaLore's projectors)."""
        return ckpt.safe_torch_load(path, self.what, optimizer_state_classes(self.trainer.args.optim))

    def load_state_dict(self, state) -> None:
        trainer = self.trainer
        if trainer.args.optim in RESUME_CAVEATS and not trainer._user_optimizer:
            logger.warning("Resuming with optim=%r: %s", trainer.args.optim, RESUME_CAVEATS[trainer.args.optim])
        state = merged_decay_groups(state, trainer.optimizer, trainer.model)
        _optimizer_errors(trainer, trainer._resume_path, lambda: trainer.runtime.strategy.load_optimizer_state(
            trainer.optimizer, state))


def merged_decay_groups(saved, optimizer, model):
    """A transformers checkpoint's optimizer state in this optimizer's layout. transformers always makes two
    groups, the weight-decay parameters then the others (each in the model's order); without weight decay this
    Trainer makes one group in the model's order. Other states are returned as they are."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    current = getattr(getattr(optimizer, "optimizer", optimizer), "param_groups", None)
    if not groups or not current or len(groups) != 2 or len(current) != 1:
        return saved
    from .optim import decay_parameter_names

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    decay = decay_parameter_names(model)
    saved_order = [n for n in names if n in decay] + [n for n in names if n not in decay]
    if len(saved_order) != sum(len(g["params"]) for g in groups):
        return saved
    saved_ids = [i for g in groups for i in g["params"]]
    position = {name: index for index, name in enumerate(names)}
    state = {position[name]: saved["state"][i] for name, i in zip(saved_order, saved_ids) if i in saved["state"]}
    group = {**groups[0], "params": list(range(len(names)))}
    return {"state": state, "param_groups": [group]}


class SchedulerPart(Part):
    file, what, optimization = ckpt.SCHEDULER_NAME, "the scheduler state", True

    def __init__(self, trainer):
        self.trainer = trainer

    def state_dict(self):
        scheduler = self.trainer.lr_scheduler
        return scheduler.state_dict() if scheduler is not None else None

    def load_state_dict(self, state) -> None:
        scheduler = self.trainer.lr_scheduler
        if scheduler is None:
            return
        groups = len(getattr(scheduler, "base_lrs", []))
        if isinstance(state, dict) and groups and len(state.get("base_lrs", [])) > groups:
            # a transformers checkpoint's two groups (merged_decay_groups): they share their rates
            state = {k: v[:groups] if k in ("base_lrs", "_last_lr", "lr_lambdas") and isinstance(v, list) else v
                     for k, v in state.items()}
        scheduler.load_state_dict(state)

    def absent(self, checkpoint: Checkpoint) -> None:
        """``resume_weights_only``: a fresh schedule stepped to the checkpoint's position."""
        scheduler = self.trainer.lr_scheduler
        if not checkpoint.weights_only or scheduler is None:
            return
        import warnings

        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(checkpoint.state.global_step):  # the schedule's position, from its start
                scheduler.step()
        logger.warning("resume_weights_only=True: %s resumed at step %d with a fresh optimizer state",
                       checkpoint.path, checkpoint.state.global_step)


class ScalerPart(Part):
    """The fp16 gradient scaler."""

    file, what, optimization = ckpt.SCALER_NAME, "the gradient scaler state", True

    def __init__(self, trainer):
        self.trainer = trainer

    def state_dict(self):
        scaler = self.trainer.runtime.scaler
        return scaler.state_dict() if scaler is not None else None

    def load_state_dict(self, state) -> None:
        scaler = self.trainer.runtime.scaler
        if scaler is not None:
            scaler.load_state_dict(state)


def trainer_parts(trainer) -> list[Part]:
    """The parts the Trainer owns, in restore order (the loop adds its own at each ``train()``)."""
    return [TrainerStatePart(trainer), OptimizerPart(trainer), SchedulerPart(trainer), ScalerPart(trainer)]


# -- the loop's parts ---------------------------------------------------------------------
class LossWindowPart(Part):
    """Step losses since the last log, so the first log after a resume is the same number."""

    file, what, json = ckpt.LOSS_WINDOW_NAME, "the loss window", True

    def __init__(self, loop):
        self.loop = loop

    def state_dict(self) -> dict:
        return {**self.loop.window.state_dict(), "last_logged_step": self.loop.last_logged_step}

    def load_state_dict(self, state: dict) -> None:
        self.loop.window.load_state_dict(state)
        self.loop.last_logged_step = state.get("last_logged_step")


class RngPart(Part):
    """Python's, numpy's and torch's random streams; put back by the loop right after the resumed epoch's
    iterator exists, before the first step."""

    file, what, per_rank = ckpt.RNG_NAME, "the RNG state", True

    def __init__(self, loop):
        self.loop = loop

    def state_dict(self) -> dict:
        return ckpt.rng_state()

    def missing(self, checkpoint: Checkpoint, file: str) -> None:
        logger.warning("%s has no %s: RNG states are not restored, the resumed run will not be bit-exact",
                       checkpoint.path, file)

    def read(self, path: str):
        """A transformers checkpoint keeps numpy's state as an array: allowed, as arrays only."""
        return ckpt.safe_torch_load(path, self.what, ckpt.numpy_array_globals())

    def load_state_dict(self, state: dict) -> None:
        self.loop.pending_rng = state


class DataPositionPart(Part):
    """The stateful dataloader's position; put back by the loop before the resumed epoch's iterator."""

    file, what, per_rank = ckpt.DATALOADER_NAME, "the dataloader state", True

    def __init__(self, loop):
        self.loop = loop

    def state_dict(self):
        position = getattr(getattr(self.loop, "dataloader", None), "state_dict", None)  # a custom loader may lack it
        return position() if position is not None else None

    def load_state_dict(self, state) -> None:
        self.loop.pending_data_position = state


def loop_parts(loop) -> list[Part]:
    return [LossWindowPart(loop), DataPositionPart(loop), RngPart(loop)]
