"""Methods of transformers' ``Trainer`` that scripts, subclasses and its own unit tests call, beyond the loop:
the optimizer's groups and rates, parameter counts, batch sizes, metric formatting, the loss's context
manager. Mixed into ``Trainer`` (``trainer.py`` keeps the loop-facing API).
"""

from __future__ import annotations

import contextlib
import datetime

import torch
from torch import nn

from .data import has_length
from .optim import decay_parameter_names, optimizer_class_and_kwargs


class TrainerApi:
    """transformers' ``Trainer`` helpers, under its names and signatures."""

    @property
    def accelerator(self):
        """The ``accelerate.Accelerator`` the run uses (device, process group, mixed precision)."""
        return self.runtime.accelerator

    @staticmethod
    def get_optimizer_cls_and_kwargs(args, model: nn.Module | None = None) -> tuple[type, dict]:
        """The optimizer class ``args.optim`` names and its keyword arguments (``optim_args`` applied)."""
        return optimizer_class_and_kwargs(args)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """The trainable parameters that get weight decay: all but biases and normalization weights."""
        names = decay_parameter_names(model)
        return [name for name, _ in model.named_parameters() if name in names]

    def get_num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def _optimizer_groups(self) -> list[dict]:
        if self.optimizer is None:
            raise ValueError("the Trainer has no optimizer yet: call create_optimizer() (or train()) first")
        return self.optimizer.param_groups

    def get_learning_rates(self) -> list[float]:
        """The learning rate of each parameter group."""
        return [group["lr"] for group in self._optimizer_groups()]

    def get_optimizer_group(self, param: str | nn.Parameter | None = None):
        """The parameter group holding ``param`` (a parameter or its name), or every group's parameters."""
        groups = self._optimizer_groups()
        if param is None:
            return [group["params"] for group in groups]
        if isinstance(param, str):
            param = dict(self.model.named_parameters())[param]
        return next((group for group in groups if any(p is param for p in group["params"])), None)

    def num_examples(self, dataloader) -> int:
        """The samples of ``dataloader``: its dataset's length, else its batches times the batch size."""
        dataset = getattr(dataloader, "dataset", None)
        if dataset is not None and has_length(dataset):
            return len(dataset)
        return len(dataloader) * self.args.per_device_train_batch_size

    def get_total_train_batch_size(self, args=None) -> int:
        """Samples an optimizer step sees: per device x accumulation x processes."""
        args = args or self.args
        return self._train_batch_size * args.gradient_accumulation_steps * self.runtime.num_processes

    def store_flos(self) -> None:
        """transformers moves its step's FLOPs into ``state.total_flos`` here; the loop of this Trainer adds
        them to it at every step, so there is nothing left to store."""

    @staticmethod
    def metrics_format(metrics: dict[str, float]) -> dict:
        """Metrics as people read them: memory in MB, runtimes as h:mm:ss.hh, FLOPs in GF, floats to 4 places."""
        out = {}
        for key, value in metrics.items():
            if "_mem_" in key:
                out[key] = f"{value >> 20}MB"
            elif "_runtime" in key:  # h:mm:ss and the hundredths, cut (not rounded)
                whole = int(value)
                out[key] = f"{datetime.timedelta(seconds=whole)}.{int((value - whole) * 100):02d}"
            elif key == "total_flos":
                out[key] = f"{int(value) >> 30}GF"
            elif isinstance(value, float):
                out[key] = round(value, 4)
            else:
                out[key] = value
        return out

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        """The autocast of the run's mixed precision (a no-op without one)."""
        return self.runtime.autocast()

    def compute_loss_context_manager(self):
        """What ``compute_loss`` runs under (the run's autocast); for subclasses that call the model themselves."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.autocast_smart_context_manager())
        return stack

    def get_batch_samples(self, epoch_iterator, num_batches: int, device=None) -> tuple[list, torch.Tensor | None]:
        """The next ``num_batches`` batches of ``epoch_iterator`` (fewer at its end) and the number of label
        tokens in them (``labels != -100``; None when the batches have no labels)."""
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        counts = [(b["labels"] != -100).sum() for b in batches if isinstance(b, dict) and "labels" in b]
        num_items = torch.stack(counts).sum() if counts else None
        if num_items is not None and device is not None:
            num_items = num_items.to(device)
        return batches, num_items
