"""Methods of transformers' ``Trainer`` that scripts, subclasses and its own unit tests call, beyond the loop:
the optimizer's groups and rates, parameter counts, batch sizes, metric formatting, the loss's context
manager. Mixed into ``Trainer`` (``trainer.py`` keeps the loop-facing API).
"""

from __future__ import annotations

import contextlib
import datetime

import torch
from torch import nn

from .data import SkippedBatches, epoch_plan, has_length
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
        """The next ``num_batches`` batches of ``epoch_iterator`` (fewer at its end) and the label tokens the loss
        averages over in them (``num_items_in_batch``: after the shift for a causal LM, over every process with
        ``average_tokens_across_devices``), or None when the loss does not use the count (``trainer/loss.py``).
        The training loop takes each optimizer step's micro-batches through it."""
        batches = []
        for _ in range(num_batches):
            batch = next(epoch_iterator, None)
            if batch is None:
                break
            batches.append(batch)
        num_items = self.num_items_in_step(batches)
        if num_items is not None and device is not None:
            num_items = num_items.to(device)
        return batches, num_items

    # -- sizes of a run -------------------------------------------------------------------------------
    def set_initial_training_values(self, args, dataloader) -> tuple[int, int, int, int, int, int, int]:
        """``(num_train_epochs, num_update_steps_per_epoch, num_examples, num_train_samples,
        total_train_batch_size, steps_in_epoch, max_steps)`` of a training run over ``dataloader``: the sizes
        the loop plans with (a dataloader without a length has ``sys.maxsize`` epochs of ``max_steps`` steps)."""
        batches, updates, max_steps, epochs = epoch_plan(args, dataloader)
        total = self.get_total_train_batch_size(args)
        if batches is None:
            return epochs, max_steps, total * max_steps, total * max_steps, total, \
                max_steps * args.gradient_accumulation_steps, max_steps
        examples = self.num_examples(dataloader)
        samples = max_steps * total if args.max_steps > 0 else examples * args.num_train_epochs
        return epochs, updates, examples, samples, total, batches, max_steps

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """``dataloader`` without its first ``num_batches`` batches. Used when a run resumes mid-epoch from a
        checkpoint without a dataloader state (one written by transformers): the skipped batches are read and
        dropped. Checkpoints of this Trainer restore the position instead, reading nothing twice. Override for a
        loader that can seek."""
        return SkippedBatches(dataloader, num_batches)

    # -- parallelism: this Trainer has no tensor, context or sequence parallelism ----------------------
    def get_tp_size(self) -> int:
        """The model's tensor-parallel degree (``model._tp_size`` of a transformers model loaded with
        ``tp_plan``), else 1."""
        return getattr(self.model, "_tp_size", None) or 1

    def get_cp_size(self) -> int:
        """Context parallelism is not supported (``parallelism_config`` is refused): 1."""
        return 1

    def get_sp_size(self) -> int:
        """Sequence parallelism is not supported (``parallelism_config`` is refused): 1."""
        return 1

    # -- the Hub repo and the end of a script ----------------------------------------------------------
    @property
    def hub_model_id(self) -> str | None:
        """The Hub repo's id once it exists (with push_to_hub, from the Trainer's creation), else None."""
        hub = self.publisher.hub
        return hub.repo_id if hub is not None else None

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create the Hub repo (``hub_model_id``, else output_dir's name) if missing; main process only.
        ``token`` and ``private`` default to ``hub_token`` and ``hub_private_repo``."""
        if self.is_world_process_zero():
            self.publisher._open_repo(token, private)

    def create_accelerator_and_postprocess(self) -> None:
        """Build the run's accelerator and engine anew from ``self.args`` (the Trainer builds them when created;
        a subclass that changed the arguments since calls this)."""
        self.runtime = type(self.runtime)(self.args)

    def end(self) -> None:
        """At the very end of a script: wait for the Hub pushes and take the process group down. Nothing that
        talks to the other processes (train, evaluate, save_model, push_to_hub) works after it."""
        from .teardown import destroy_process_group_at_exit

        if self.publisher.hub is not None:
            self.publisher.hub.close()
        destroy_process_group_at_exit()
