"""The checkpoints fields of ``TrainingArguments`` (``CheckpointArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from callbacks.strategies import SaveStrategy

from . import _help


@dataclass
class CheckpointArguments:
    """Checkpoints: when, how many, what they hold, and resuming from them."""

    save_strategy: str = field(
        default="steps", metadata=_help("When to save checkpoints.", choices=SaveStrategy.values())
    )
    save_steps: float = field(
        default=500, metadata=_help("Save every N update steps; a float < 1 is a fraction of the total steps.")
    )
    save_total_limit: int | None = field(
        default=None,
        metadata=_help("Keep at most this many checkpoints; the best and the newest are never deleted."),
    )
    save_only_model: bool = field(
        default=False,
        metadata=_help("Checkpoints hold the model only (no optimizer, scheduler, RNG or data state): smaller, "
                       "but training cannot resume from them."),
    )
    save_on_each_node: bool = field(
        default=False,
        metadata=_help("In multi-node runs, write checkpoints on every node (for node-local disks), not only on "
                       "the main one."),
    )
    save_async: bool = field(
        default=False,
        metadata=_help("Write checkpoints in a background thread: the state is copied to host memory at the save "
                       "step and training goes on while the files are written (still atomically: the folder is "
                       "renamed into place only when complete). One save in flight at a time. Single-process and "
                       "DDP runs; not with deepspeed, fsdp or sharded_ddp, whose engines write their own files."),
    )
    save_on_interrupt: bool = field(
        default=False,
        metadata=_help("Treat Ctrl-C (SIGINT) like SIGTERM: finish the step, save a checkpoint and exit cleanly."),
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata=_help("Used by train() when it gets no resume_from_checkpoint: a checkpoint path, 'true' "
                       "(newest complete checkpoint in output_dir) or 'auto' (resume if one exists, else start)."),
    )
    resume_weights_only: bool = field(
        default=False,
        metadata=_help("Resume from a checkpoint without its optimizer state (one saved with save_only_model=True, "
                       "or whose optimizer.pt is lost, or to change optim): the weights, step, epoch and learning-rate schedule position "
                       "are restored, the optimizer starts fresh. Not bit-exact; a checkpoint without a data position "
                       "(save_only_model) continues the epoch by reading and dropping its first batches."),
    )
    ignore_data_skip: bool = field(
        default=False,
        metadata=_help("When resuming, start the data from the beginning instead of the saved position."),
    )
    restore_callback_states_from_checkpoint: bool = field(
        default=True,
        metadata=_help("Restore the states of the stateful callbacks (EarlyStoppingCallback's patience...) when "
                       "resuming. True here (exact resume); transformers' default is False."),
    )
    enable_jit_checkpoint: bool = field(
        default=False,
        metadata=_help("transformers' checkpoint on SIGTERM. trainforge always saves on SIGTERM (see "
                       "save_on_interrupt for Ctrl-C), so this changes nothing."),
    )
