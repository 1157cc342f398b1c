"""The optimization fields of ``TrainingArguments`` (``OptimizationArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..argument_checks import ALL_OPTIMIZER_NAMES, NONFINITE_LOSS, SCHEDULER_NAMES, TORCH_COMPILE_MODES
from . import _help


@dataclass
class OptimizationArguments:
    """Optimization: batch, accumulation, optimizer, schedule, length of training, and what changes the
    step (clipping, label smoothing, gradient checkpointing, compilation, non-finite losses)."""

    per_device_train_batch_size: int = field(default=8, metadata=_help("Training batch size per device."))
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("Micro-batches whose gradients are summed before each optimizer step.")
    )
    learning_rate: float = field(default=5e-5, metadata=_help("Peak learning rate of the optimizer."))
    weight_decay: float = field(
        default=0.0, metadata=_help("Weight decay for all parameters except biases and normalization weights.")
    )
    adam_beta1: float = field(default=0.9, metadata=_help("beta1 of Adam-type optimizers."))
    adam_beta2: float = field(default=0.999, metadata=_help("beta2 of Adam-type optimizers."))
    adam_epsilon: float = field(default=1e-8, metadata=_help("epsilon of Adam-type optimizers."))
    max_grad_norm: float | None = field(
        default=1.0, metadata=_help("Clip the global gradient norm to this value; 0 or None disables clipping.")
    )
    num_train_epochs: float = field(
        default=3.0, metadata=_help("Epochs to train (a float trains part of the last one); max_steps overrides.")
    )
    max_steps: int = field(
        default=-1,
        metadata=_help("Total optimizer steps; when > 0 overrides num_train_epochs. Required for IterableDatasets."),
    )
    lr_scheduler_type: str = field(
        default="linear", metadata=_help("Learning-rate schedule.", choices=list(SCHEDULER_NAMES))
    )
    lr_scheduler_kwargs: dict | str | None = field(
        default=None,
        metadata=_help("Extra keyword arguments of the schedule, e.g. {'num_cycles': 2}; a JSON string is accepted."),
    )
    warmup_ratio: float = field(
        default=0.0, metadata=_help("Fraction of the total steps spent warming up linearly from 0.")
    )
    warmup_steps: float = field(default=0, metadata=_help(
        "Warm-up steps; below 1, a ratio of the run's steps (as transformers 5 reads it). When > 0 it overrides "
        "warmup_ratio."))
    nonfinite_loss: str = field(
        default="ignore",
        metadata=_help(
            "What a nan/inf training loss does: 'ignore' trains on (the HF Trainer's behaviour), 'skip' drops that "
            "update (no optimizer or schedule step, gradients cleared) with a warning naming the step, 'stop' raises "
            "FloatingPointError naming the step, keeping the checkpoints written before. 'skip' and 'stop' read "
            "the loss on the host once per update.",
            choices=NONFINITE_LOSS,
        ),
    )
    label_smoothing_factor: float = field(
        default=0.0, metadata=_help("Label smoothing epsilon for classification losses (0 disables).")
    )
    optim: str = field(default="adamw_torch", metadata=_help("Optimizer: torch's (adamw_torch, adamw_torch_fused, adafactor, sgd, adagrad, rmsprop) or, by transformers' names, another library's (schedule_free_adamw...; see docs/compat.md).", choices=list(ALL_OPTIMIZER_NAMES)))
    optim_args: str | None = field(
        default=None, metadata=_help("Extra optimizer keyword arguments as 'key=value,key2=value2'.")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations in backward to save memory: the model's own "
                                      "activation_checkpointing_enable() (a transformers model).")
    )
    gradient_checkpointing_kwargs: dict | str | None = field(
        default=None, metadata=_help("Keyword arguments of torch.utils.checkpoint (default use_reentrant=False), "
                                     "plus transformers' every_n_layers (checkpoint every n-th layer) and offload "
                                     "(keep the saved activations in host memory).")
    )
    torch_compile: bool = field(default=False, metadata=_help("Compile the model with torch.compile."))
    torch_compile_backend: str | None = field(
        default=None, metadata=_help("torch.compile backend (implies torch_compile); default 'inductor'.")
    )
    torch_compile_mode: str | None = field(
        default=None, metadata=_help("torch.compile mode (implies torch_compile).", choices=TORCH_COMPILE_MODES)
    )
    auto_find_batch_size: bool = field(
        default=False,
        metadata=_help("On an out-of-memory error, halve the batch size and retry (accelerate's finder)."),
    )
    average_tokens_across_devices: bool = field(
        default=True,
        metadata=_help("Normalize the loss by the label tokens of the optimizer step counted over all processes "
                       "(one all-reduce per step), not each process's own; for models whose loss takes "
                       "num_items_in_batch (trainer/loss.py)."),
    )
    neftune_noise_alpha: float | None = field(
        default=None, metadata=_help("NEFTune: uniform noise of magnitude alpha/sqrt(length x hidden) on the input "
                                     "embeddings in training forwards (e.g. 5); none in evaluation or after train().")
    )
    optim_target_modules: None | str | list[str] = field(
        default=None,
        metadata=_help("The linear modules whose weights GaLore/APOLLO optimizers project: names, a regex, or "
                       "'all-linear'."),
    )
    torch_empty_cache_steps: int | None = field(
        default=None,
        metadata=_help("Every this many steps, release the cached GPU memory (torch.cuda.empty_cache()); no effect "
                       "without CUDA."),
    )
    use_cache: bool = field(
        default=False,
        metadata=_help("Set the model's config.use_cache to this when training starts (transformers models keep "
                       "no key-value cache in training)."),
    )
