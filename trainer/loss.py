"""The loss of one micro-batch and its backward, normalized over the label tokens of the whole optimizer step.

With gradient accumulation, the mean of the micro-batches' mean losses is not the loss of the step's batch
when the micro-batches hold different numbers of label tokens (variable lengths, ``-100`` padding). So, as
transformers 5 does, the loop fetches an optimizer step's micro-batches first and counts the label tokens the
loss averages over (``num_items_in_batch``): ``labels != -100`` after the shift for a causal language model
(``shift_labels`` as given by a padding-free collator), summed over the micro-batches and, with
``average_tokens_across_devices``, over the processes (one all-reduce per optimizer step). Each micro-batch's loss
is then its token sum over that count, so the accumulated gradient is the gradient of the whole step's mean
token loss; it is not divided by the accumulation steps, and is multiplied by the number of processes when the
count spans them (DDP averages the processes' gradients).

The count is used where the loss takes it: a model whose ``forward`` accepts ``num_items_in_batch`` (transformers
models do), a ``compute_loss_func``, label smoothing, or an overridden ``compute_loss`` that declares a
``num_items_in_batch`` parameter. Other models keep the mean of the micro-batches' means.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import nn

from .faults import bad_loss_error, call_model, no_loss_message
from .prediction_store import PAD_INDEX


def accepts_kwarg(fn, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def inner_model(model: nn.Module) -> nn.Module:
    """The model under DDP's or an engine's wrapper and under a PEFT wrapper."""
    model = getattr(model, "module", model)
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_takes_num_items(model: nn.Module) -> bool:
    """Whether ``model``'s forward normalizes its loss by a ``num_items_in_batch`` it is given: its
    ``accepts_loss_kwargs`` says so, or its forward names the parameter, or it is a transformers model whose forward
    takes ``**kwargs`` (its loss functions read it). A plain module that only takes ``**kwargs`` is not assumed to."""
    inner = inner_model(model)
    declared = getattr(inner, "accepts_loss_kwargs", None)
    if declared is not None:
        return bool(declared)
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False
    if "num_items_in_batch" in params:
        return True
    is_transformers = any(k.__name__ == "PreTrainedModel" and k.__module__.startswith("transformers.")
                          for k in type(inner).__mro__)
    return is_transformers and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def loss_shifts_labels(model: nn.Module) -> bool:
    """Whether the model's loss predicts label i+1 at position i (a transformers causal LM, not encoder-decoder)."""
    inner = inner_model(model)
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or not hasattr(type(inner), "loss_function"):
        return False
    return getattr(inner.loss_function, "__name__", "") == "ForCausalLMLoss"


def label_tokens(batch, shifted: bool) -> torch.Tensor | None:
    """The label tokens of one micro-batch the loss averages over (a device tensor, no sync); None when the batch
    has no tensor labels."""
    if not isinstance(batch, Mapping):
        return None
    if "shift_labels" in batch:
        labels = batch["shift_labels"]
    elif "labels" in batch:
        labels = batch["labels"]
        if shifted and torch.is_tensor(labels):
            labels = labels[..., 1:]
    else:
        return None
    return (labels != PAD_INDEX).sum() if torch.is_tensor(labels) else None


class LossComputation:
    """The Trainer's ``compute_loss`` and ``training_step`` (mixed into ``Trainer``)."""

    def _loss_plan(self) -> None:
        """Whether the step's token count is used and how the model's labels align; worked out again when the
        model, the loss function or the smoother changed (model_init, a search trial)."""
        key = (id(self.model), self.compute_loss_func, self.label_smoother)
        if getattr(self, "_loss_plan_key", None) == key:
            return
        own_compute_loss = type(self).compute_loss is LossComputation.compute_loss
        self._model_takes_items = model_takes_num_items(self.model)
        self._uses_num_items = (
            self.compute_loss_func is not None
            or self.label_smoother is not None
            or (self._model_takes_items if own_compute_loss else self._compute_loss_takes_num_items)
        )
        self._shifts_labels = loss_shifts_labels(self.model)
        self._loss_plan_key = key

    def num_items_in_step(self, batches: list) -> torch.Tensor | None:
        """The label tokens of an optimizer step's micro-batches (and of every process's, with
        ``average_tokens_across_devices``); None when the loss does not use the count."""
        self._loss_plan()
        if not self._uses_num_items:
            return None
        counts = [label_tokens(batch, self._shifts_labels) for batch in batches]
        if not counts or any(c is None for c in counts):
            return None
        total = torch.stack([c.to(self.runtime.device) for c in counts]).sum()
        if self.args.average_tokens_across_devices and self.runtime.num_processes > 1:
            total = self.runtime.accelerator.reduce(total, reduction="sum")  # stays on the device: no sync
        return total

    def label_tokens_of(self, inputs) -> torch.Tensor | None:
        """The label tokens of an evaluation batch when the model's loss is their mean (it takes the count), to weigh
        that batch's loss by; else None (weighed by its samples)."""
        self._loss_plan()
        return label_tokens(inputs, self._shifts_labels) if self._model_takes_items else None

    def compute_loss(self, model: nn.Module, inputs, return_outputs: bool = False, num_items_in_batch=None):
        """The loss of one batch; with ``return_outputs`` also the model outputs. ``num_items_in_batch`` (the label
        tokens of the whole optimizer step) goes to the model when it takes it, to ``compute_loss_func`` and to
        label smoothing, which then return the batch's token sum over it."""
        self._loss_plan()
        labels = None
        if (self.label_smoother is not None or self.compute_loss_func is not None) and isinstance(inputs, Mapping) \
                and "labels" in inputs:
            inputs = dict(inputs)
            labels = inputs.pop("labels")
        elif num_items_in_batch is not None and isinstance(inputs, Mapping) and self._model_takes_items:
            inputs = {**inputs, "num_items_in_batch": num_items_in_batch}
        outputs = call_model(model, inputs)
        if labels is not None and self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        elif labels is not None:
            loss = self.label_smoother(outputs, labels, shift_labels=self._shifts_labels,
                                       num_items_in_batch=num_items_in_batch)
        elif isinstance(outputs, torch.Tensor):
            loss = outputs
        elif isinstance(outputs, Mapping):
            if outputs.get("loss") is None:
                raise ValueError(no_loss_message(outputs, inputs, self.label_names))
            loss = outputs["loss"]
        else:
            loss = outputs[0]
        if self.args.past_index >= 0:
            values = list(outputs.values()) if isinstance(outputs, Mapping) else outputs
            self._past = values[self.args.past_index]
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: nn.Module, inputs, num_items_in_batch=None) -> torch.Tensor:
        """Forward, loss and backward of one micro-batch; returns the detached, scaled loss (its sum over the
        optimizer step's micro-batches is the step's loss).

        ``model.train()`` is set by the loop at each epoch start and after each evaluation,
        not here, to keep it off the per-step path.
        """
        inputs = self._prepare_inputs(inputs)
        if self._compute_loss_takes_num_items:
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        else:
            loss = self.compute_loss(model, inputs)
        if not isinstance(loss, torch.Tensor) or loss.dim():
            raise bad_loss_error(loss, inputs, self.label_names)
        if num_items_in_batch is not None and self._uses_num_items:
            if self.args.average_tokens_across_devices and self.runtime.num_processes > 1:
                loss = loss * self.runtime.num_processes  # the count spans the processes; DDP averages them
        elif self.current_gradient_accumulation_steps > 1:
            loss = loss / self.current_gradient_accumulation_steps
        self.runtime.backward(loss)
        return loss.detach()

    def _prepare_inputs(self, inputs):
        from .data import to_device

        if self.args.past_index >= 0 and self._past is not None and isinstance(inputs, Mapping):
            inputs = {**inputs, "mems": self._past}
        return to_device(inputs, self.runtime.device)
