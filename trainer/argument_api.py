"""What ``TrainingArguments`` offers besides its fields, under transformers' names, for the scripts written
for it (its ``run_*.py`` examples call ``get_process_log_level()``, ``parallel_mode``, ``should_save``,
``main_process_first()``): the process's place in the run, and the ``set_*`` builders that set several
fields at once. The fields themselves are in ``argument_sections/``.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import sys
from datetime import timedelta

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
              "critical": logging.CRITICAL}


class ParallelMode(str, enum.Enum):
    """How the run is spread: transformers' values (its enum is returned instead when transformers is loaded,
    so that scripts comparing with ``transformers.training_args.ParallelMode`` get equal members)."""

    NOT_PARALLEL = "not_parallel"
    NOT_DISTRIBUTED = "not_distributed"
    DISTRIBUTED = "distributed"


class ArgumentsApi:
    """Mixed into ``TrainingArguments``: properties and methods of transformers' ``TrainingArguments``."""

    default_optim = "adamw_torch"

    @classmethod
    def converted(cls, other):
        """These arguments from transformers' ``TrainingArguments`` (or a subclass): every field both have, with
        its value there; a one-line warning says so. Anything else is a TypeError."""
        if not (dataclasses.is_dataclass(other) and type(other).__module__.startswith("transformers")):
            raise TypeError(f"args must be a trainer.TrainingArguments, got {type(other).__name__}")
        ours = {f.name for f in dataclasses.fields(cls) if f.init}
        values = {f.name: getattr(getattr(other, f.name), "value", getattr(other, f.name))
                  for f in dataclasses.fields(other) if f.init and f.name in ours}
        for name, value in values.items():
            if dataclasses.is_dataclass(value):  # accelerator_config is an AcceleratorConfig there
                values[name] = dataclasses.asdict(value)
        if values.get("output_dir") is None:
            values.pop("output_dir", None)
        logging.getLogger("trainer").warning(
            "Trainer got transformers' %s: converted to trainforge's TrainingArguments (%d fields taken as they "
            "are)", type(other).__name__, len(values))
        return cls(**values)

    # -- the process's place in the run -------------------------------------------------------
    @property
    def parallel_mode(self):
        """``DISTRIBUTED`` with several processes, ``NOT_DISTRIBUTED`` for one process on several GPUs,
        else ``NOT_PARALLEL``."""
        mode = (ParallelMode.DISTRIBUTED if self.world_size > 1 else
                ParallelMode.NOT_DISTRIBUTED if self.n_gpu > 1 else ParallelMode.NOT_PARALLEL)
        theirs = sys.modules.get("transformers.training_args")
        return theirs.ParallelMode(mode.value) if theirs is not None else mode

    @property
    def should_save(self) -> bool:
        """Whether this process writes checkpoints and models: the main one (each node's with
        ``save_on_each_node``)."""
        return (self.local_process_index if self.save_on_each_node else self.process_index) == 0

    @property
    def should_log(self) -> bool:
        return (self.local_process_index if self.log_on_each_node else self.process_index) == 0

    @property
    def ddp_timeout_delta(self) -> timedelta:
        return timedelta(seconds=self.ddp_timeout)

    @property
    def place_model_on_device(self) -> bool:
        """Whether the Trainer moves the model to the device itself (an engine that shards it does not)."""
        from integrations.parallel import chosen_engines

        return not chosen_engines(self)

    def get_process_log_level(self) -> int:
        """The ``logging`` level of this process: ``log_level`` on the main process (each node's with
        ``log_on_each_node``), ``log_level_replica`` on the others; 'passive' is the ``trainer`` logger's
        current level (WARNING when unset)."""
        level = self.log_level if self.should_log else self.log_level_replica
        if level == "passive":
            return logging.getLogger("trainer").getEffectiveLevel()
        return LOG_LEVELS[level]

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """The warmup steps of a run of ``num_training_steps``: ``warmup_steps``, else ``warmup_ratio`` of them."""
        from .optim import num_warmup_steps

        return num_warmup_steps(self, num_training_steps)

    # -- builders: several fields at once, as transformers' set_* methods; each returns the arguments ----------
    def _set(self, **values):
        for name, value in values.items():
            setattr(self, name, value)
        self.__post_init__()  # normalized and checked as at construction
        return self

    def set_training(self, learning_rate: float = 5e-5, batch_size: int = 8, weight_decay: float = 0,
                     num_epochs: float = 3, max_steps: int = -1, gradient_accumulation_steps: int = 1,
                     seed: int = 42, activation_checkpointing: bool = False, gradient_checkpointing=None):
        return self._set(learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                         weight_decay=weight_decay, num_train_epochs=num_epochs, max_steps=max_steps,
                         gradient_accumulation_steps=gradient_accumulation_steps, seed=seed,
                         activation_checkpointing=activation_checkpointing or None,
                         gradient_checkpointing=bool(gradient_checkpointing))

    def set_evaluate(self, strategy="no", steps: int = 500, batch_size: int = 8, accumulation_steps=None,
                     delay=None, loss_only: bool = False):
        return self._set(eval_strategy=getattr(strategy, "value", strategy), eval_steps=steps,
                         per_device_eval_batch_size=batch_size, eval_accumulation_steps=accumulation_steps,
                         eval_delay=delay or 0, prediction_loss_only=loss_only)

    def set_testing(self, batch_size: int = 8, loss_only: bool = False):
        return self._set(per_device_eval_batch_size=batch_size, prediction_loss_only=loss_only)

    def set_save(self, strategy="steps", steps: int = 500, total_limit=None, on_each_node: bool = False):
        return self._set(save_strategy=getattr(strategy, "value", strategy), save_steps=steps,
                         save_total_limit=total_limit, save_on_each_node=on_each_node)

    def set_logging(self, strategy="steps", steps: int = 500, report_to="none", level: str = "passive",
                    first_step: bool = False, nan_inf_filter: bool = False, on_each_node: bool = False,
                    replica_level: str = "passive"):
        return self._set(logging_strategy=getattr(strategy, "value", strategy), logging_steps=steps,
                         report_to=report_to, log_level=level, logging_first_step=first_step,
                         logging_nan_inf_filter=nan_inf_filter, log_on_each_node=on_each_node,
                         log_level_replica=replica_level)

    def set_push_to_hub(self, model_id: str, strategy="every_save", token=None, private_repo=None,
                        always_push: bool = False, revision=None):
        return self._set(push_to_hub=True, hub_model_id=model_id, hub_strategy=getattr(strategy, "value", strategy),
                         hub_token=token, hub_private_repo=private_repo, hub_always_push=always_push,
                         hub_revision=revision)

    def set_optimizer(self, name="adamw_torch", learning_rate: float = 5e-5, weight_decay: float = 0,
                      beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, args=None):
        return self._set(optim=getattr(name, "value", name), learning_rate=learning_rate,
                         weight_decay=weight_decay, adam_beta1=beta1, adam_beta2=beta2, adam_epsilon=epsilon,
                         optim_args=args)

    def set_lr_scheduler(self, name="linear", num_epochs: float = 3.0, max_steps: int = -1, warmup_steps: float = 0):
        ratio, steps = (warmup_steps, 0) if 0 < warmup_steps < 1 else (0.0, int(warmup_steps))
        return self._set(lr_scheduler_type=getattr(name, "value", name), num_train_epochs=num_epochs,
                         max_steps=max_steps, warmup_ratio=ratio, warmup_steps=steps)

    def set_dataloader(self, train_batch_size: int = 8, eval_batch_size: int = 8, drop_last: bool = False,
                       num_workers: int = 0, pin_memory: bool = True, persistent_workers: bool = False,
                       prefetch_factor=None, multiprocessing_context=None, in_order: bool = True,
                       auto_find_batch_size: bool = False, ignore_data_skip: bool = False, sampler_seed=None):
        return self._set(per_device_train_batch_size=train_batch_size, per_device_eval_batch_size=eval_batch_size,
                         dataloader_drop_last=drop_last, dataloader_num_workers=num_workers,
                         dataloader_pin_memory=pin_memory, dataloader_persistent_workers=persistent_workers,
                         dataloader_prefetch_factor=prefetch_factor,
                         dataloader_multiprocessing_context=multiprocessing_context, dataloader_in_order=in_order,
                         auto_find_batch_size=auto_find_batch_size, ignore_data_skip=ignore_data_skip,
                         data_seed=sampler_seed)
