"""The callback bus: TrainerState, TrainerControl, TrainerCallback and CallbackHandler.

Where every event fires (``Trainer.train``)::

    on_init_end                                   (end of Trainer.__init__)
    train():
      on_train_begin
      for epoch:
        on_epoch_begin
        for each optimizer step:
          on_step_begin
          for each micro-batch of the accumulation:
            forward + loss, backward
            on_substep_end                        (after every micro-batch but the last)
          clip gradients
          on_pre_optimizer_step
          optimizer.step()
          on_optimizer_step
          scheduler.step(); zero_grad()
          global_step += 1
          on_step_end
          [log -> on_log] [evaluate -> on_prediction_step*, on_evaluate] [save -> on_save]
        on_epoch_end
        [log -> on_log] [evaluate -> on_evaluate] [save -> on_save]
      [final metrics: log -> on_log]
      on_train_end
    push_to_hub() and every checkpoint pushed: on_push_begin
    evaluate(): on_prediction_step per batch, then on_evaluate
    predict():  on_prediction_step per batch, then on_predict

Callbacks read ``args``, ``state`` and ``control`` plus keyword objects (``model``,
``processing_class``, ``optimizer``, ``lr_scheduler``, ``train_dataloader``,
``eval_dataloader``, and per event ``metrics`` or ``logs``). They steer the loop only through
:class:`TrainerControl`; returning a control object (or ``None``) is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from trainer.arguments import TrainingArguments

logger = logging.getLogger(__name__)

EVENTS = (
    "on_init_end",
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_step_begin",
    "on_substep_end",
    "on_pre_optimizer_step",
    "on_optimizer_step",
    "on_step_end",
    "on_evaluate",
    "on_predict",
    "on_save",
    "on_log",
    "on_prediction_step",
    "on_push_begin",
)


class ExportableState:
    """Mixin for callbacks whose state must survive a checkpoint.

    ``state()`` returns ``{"args": ..., "attributes": ...}``: ``args`` rebuild the object,
    ``attributes`` are set on it after construction.
    """

    def state(self) -> dict:
        raise NotImplementedError("You must implement a `state` function to utilize this class.")

    @classmethod
    def from_state(cls, state: dict) -> ExportableState:
        instance = cls(**state["args"])
        for key, value in state["attributes"].items():
            setattr(instance, key, value)
        return instance


@dataclass
class TrainerState:
    """What the Trainer knows about the run; saved as ``trainer_state.json`` in checkpoints.

    One step is one optimizer update: with ``gradient_accumulation_steps=n`` a step takes n
    micro-batches. ``epoch`` is fractional during training (2.5 = half-way through the third).
    """

    epoch: float | None = 0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)

    def compute_steps(self, args, max_steps: int) -> None:
        """``logging_steps``, ``eval_steps`` and ``save_steps`` from ``args`` for a run of ``max_steps``: a
        value below 1 is that fraction of the run (rounded up), as transformers computes them."""
        import math

        for name in ("logging", "eval", "save"):
            value = getattr(args, f"{name}_steps")
            if value is not None:
                setattr(self, f"{name}_steps", math.ceil(max_steps * value) if value < 1 else int(value))

    def to_json_string(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    def save_to_json(self, json_path: str) -> None:
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    @classmethod
    def load_from_json(cls, json_path: str) -> TrainerState:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def record_callback_states(self, callbacks: list) -> None:
        """Store ``state()`` of every :class:`ExportableState` callback (and the control)."""
        states: dict[str, Any] = {}
        for cb in callbacks:
            if not isinstance(cb, ExportableState):
                continue
            name = type(cb).__name__
            if name in states:  # several of one class: keep them all, in order
                if not isinstance(states[name], list):
                    states[name] = [states[name]]
                states[name].append(cb.state())
            else:
                states[name] = cb.state()
        self.stateful_callbacks = states


@dataclass
class TrainerControl(ExportableState):
    """Flags callbacks set to steer the loop; the Trainer resets them after acting on them."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def _new_training(self) -> None:
        self.should_training_stop = False

    def _new_epoch(self) -> None:
        self.should_epoch_stop = False

    def _new_step(self) -> None:
        self.should_save = False
        self.should_evaluate = False
        self.should_log = False

    def state(self) -> dict:
        return {"args": dataclasses.asdict(self), "attributes": {}}


class TrainerCallback:
    """Base class of all callbacks: one no-op method per event, override the ones you need.

    Every method receives ``(args, state, control, **kwargs)`` and may return a
    :class:`TrainerControl` (or ``None``).
    """

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """At the end of ``Trainer.__init__``."""

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """At the start of ``train()``, once the optimizer and dataloader exist."""

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """At the end of ``train()``, after the final metrics were logged."""

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """At the start of every epoch."""

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """At the end of every epoch, before its log/evaluate/save."""

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Before the first micro-batch of an optimizer step."""

    def on_substep_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After every micro-batch of gradient accumulation except the last one."""

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After gradient clipping, right before ``optimizer.step()``."""

    def on_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Right after ``optimizer.step()``, before ``zero_grad``."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After an optimizer step; ``state.global_step`` already counts it."""

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After an evaluation; ``metrics`` is passed as a keyword."""

    def on_predict(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After ``predict()``; ``metrics`` is passed as a keyword."""

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After a checkpoint was written."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After logs were recorded; ``logs`` is passed as a keyword."""

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After every evaluation or prediction batch."""

    def on_push_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Before the output folder (or a checkpoint's files) is pushed to the Hub."""


def _callback_root(cls: type) -> type | None:
    """The ``TrainerCallback`` base of ``cls``: ours, or transformers' for callbacks written for its Trainer
    (they take the same arguments and run on this bus unchanged). None for anything else."""
    for klass in cls.__mro__:
        if klass is TrainerCallback or (
            klass.__name__ == "TrainerCallback" and klass.__module__ == "transformers.trainer_callback"
        ):
            return klass
    return None


def _overrides(callback, event: str) -> bool:
    base = getattr(_callback_root(type(callback)), event, None)
    return getattr(type(callback), event, base) is not base or event in vars(callback)


def _note_callback_error(error: Exception, method, event: str, state) -> None:
    owner = type(getattr(method, "__self__", method)).__name__
    step = getattr(state, "global_step", None)
    note = f"raised by callback {owner}.{event}" + (f" at global step {step}" if step is not None else "")
    if note not in getattr(error, "__notes__", ()):  # an event re-dispatched by another callback notes once
        error.add_note(note + "; the checkpoints already written are complete and the run can resume from the last")


class CallbackHandler(TrainerCallback):
    """Holds the callbacks and calls them in order for each event.

    Dispatch is precomputed per event: only callbacks that override an event are called, so
    an event nobody listens to costs one dictionary lookup on the training hot path.
    """

    def __init__(self, callbacks, model=None, processing_class=None, optimizer=None, lr_scheduler=None):
        self.callbacks: list[TrainerCallback] = []
        self.model = model
        self.processing_class = processing_class
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.train_dataloader = None
        self.eval_dataloader = None
        self._listeners: dict[str, list] = {}
        for cb in callbacks:
            self.add_callback(cb)
        if not any(type(cb).__name__ == "DefaultFlowCallback" for cb in self.callbacks):
            logger.warning("The callbacks hold no DefaultFlowCallback (%s): nothing decides when to log, evaluate "
                           "and save, so the run does none of them unless another callback asks",
                           self.callback_list.replace("\n", ", ") or "none")

    # -- membership -------------------------------------------------------------------
    def add_callback(self, callback) -> None:
        cb = callback() if isinstance(callback, type) else callback
        if _callback_root(type(cb)) is None:
            raise TypeError(
                f"callbacks must be TrainerCallback subclasses or instances, got {type(cb).__name__}; "
                "subclass trainer.TrainerCallback (transformers.TrainerCallback works too)"
            )
        cb_class = type(cb)
        if any(type(c) is cb_class for c in self.callbacks):
            logger.warning(
                "Adding a second %s: the callbacks now hold two of it (%s).", cb_class.__name__, self.callback_list
            )
        self.callbacks.append(cb)
        self._listeners.clear()

    def pop_callback(self, callback):
        """Remove and return the first callback that is ``callback`` (instance) or of that class."""
        for i, cb in enumerate(self.callbacks):
            if (isinstance(callback, type) and type(cb) is callback) or cb is callback:
                self._listeners.clear()
                return self.callbacks.pop(i)
        return None

    def remove_callback(self, callback) -> None:
        self.pop_callback(callback)

    @property
    def callback_list(self) -> str:
        return "\n".join(type(cb).__name__ for cb in self.callbacks)

    # -- dispatch ---------------------------------------------------------------------
    def listeners(self, event: str) -> list:
        """Bound methods of the callbacks that override ``event``, in callback order."""
        found = self._listeners.get(event)
        if found is None:
            found = [getattr(cb, event) for cb in self.callbacks if _overrides(cb, event)]
            self._listeners[event] = found
        return found

    def call_event(self, event: str, args, state, control, **kwargs):
        methods = self._listeners.get(event)
        if methods is None:
            methods = self.listeners(event)
        if not methods:
            return control
        try:
            for method in methods:
                result = method(
                    args,
                    state,
                    control,
                    model=self.model,
                    processing_class=self.processing_class,
                    optimizer=self.optimizer,
                    lr_scheduler=self.lr_scheduler,
                    train_dataloader=self.train_dataloader,
                    eval_dataloader=self.eval_dataloader,
                    **kwargs,
                )
                if result is not None:
                    control = result
        except Exception as error:  # the type is kept (callers may catch it); the note says where it came from
            _note_callback_error(error, method, event, state)
            raise
        return control

    def on_init_end(self, args, state, control, **kwargs):
        return self.call_event("on_init_end", args, state, control)

    def on_train_begin(self, args, state, control, **kwargs):
        control._new_training()
        return self.call_event("on_train_begin", args, state, control)

    def on_train_end(self, args, state, control, **kwargs):
        return self.call_event("on_train_end", args, state, control)

    def on_epoch_begin(self, args, state, control, **kwargs):
        control._new_epoch()
        return self.call_event("on_epoch_begin", args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        return self.call_event("on_epoch_end", args, state, control)

    def on_step_begin(self, args, state, control, **kwargs):
        control._new_step()
        return self.call_event("on_step_begin", args, state, control)

    def on_substep_end(self, args, state, control, **kwargs):
        return self.call_event("on_substep_end", args, state, control)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        return self.call_event("on_pre_optimizer_step", args, state, control)

    def on_optimizer_step(self, args, state, control, **kwargs):
        return self.call_event("on_optimizer_step", args, state, control)

    def on_step_end(self, args, state, control, **kwargs):
        return self.call_event("on_step_end", args, state, control)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        control.should_evaluate = False
        return self.call_event("on_evaluate", args, state, control, metrics=metrics)

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        return self.call_event("on_predict", args, state, control, metrics=metrics)

    def on_save(self, args, state, control, **kwargs):
        control.should_save = False
        return self.call_event("on_save", args, state, control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        control.should_log = False
        return self.call_event("on_log", args, state, control, logs=logs)

    def on_prediction_step(self, args, state, control, **kwargs):
        return self.call_event("on_prediction_step", args, state, control)

    def on_push_begin(self, args, state, control, **kwargs):
        return self.call_event("on_push_begin", args, state, control)
