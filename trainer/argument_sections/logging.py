"""The logging fields of ``TrainingArguments`` (``LoggingArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from callbacks.strategies import IntervalStrategy

from ..argument_checks import LOG_LEVELS
from . import _help


@dataclass
class LoggingArguments:
    """Logging: what the run logs, where, and how often; the progress display and the profiler."""

    log_level: str = field(
        default="passive",
        metadata=_help("Log level of the main process; 'passive' leaves the logging setup alone.", choices=LOG_LEVELS),
    )
    log_level_replica: str = field(
        default="warning", metadata=_help("Log level of the other processes.", choices=LOG_LEVELS)
    )
    logging_dir: str | None = field(
        default=None, metadata=_help("Directory of logging backends; default output_dir/runs/DATE_HOST.")
    )
    logging_strategy: str = field(
        default="steps", metadata=_help("When to log training loss and learning rate.", choices=IntervalStrategy.values())
    )
    logging_first_step: bool = field(default=False, metadata=_help("Also log after the first optimizer step."))
    include_num_input_tokens_seen: bool | str = field(
        default=False,
        metadata=_help("Count the input tokens trained on (all processes) and log num_input_tokens_seen: True or "
                       "'all' counts every position of the main input (input_ids), 'non_padding' only those the "
                       "attention_mask keeps. Each training log also gets train_runtime and "
                       "train_tokens_per_second (this train() call's tokens / its seconds)."),
    )
    include_tokens_per_second: bool = field(
        default=False,
        metadata=_help("Report train_tokens_per_second (input tokens of all processes / runtime) in train()'s "
                       "metrics too; counts tokens as include_num_input_tokens_seen=True does if that is off."),
    )
    logging_steps: float = field(
        default=500, metadata=_help("Log every N update steps; a float < 1 is a fraction of the total steps.")
    )
    logging_nan_inf_filter: bool = field(
        default=True,
        metadata=_help(
            "Leave nan/inf step losses out of the logged average (the mean of the finite ones replaces them). "
            "Only the logged number changes, never the gradients."
        ),
    )
    profile: bool = field(
        default=False,
        metadata=_help("Profile training steps 3-5 with torch.profiler (ProfilerCallback with its defaults) and write "
                       "the trace under logging_dir/profile, viewable in TensorBoard or Perfetto."),
    )
    log_on_each_node: bool = field(
        default=True,
        metadata=_help("In multi-node runs, apply log_level on each node's main process (False: only on the "
                       "global main; the others use log_level_replica)."),
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata=_help("Print logs instead of showing progress bars; default: True when log level is above warning."),
    )
    report_to: None | str | list[str] = field(
        default="none", metadata=_help("Logging backends: 'none', 'all', a name or a list of names.")
    )
    skip_memory_metrics: bool = field(
        default=True, metadata=_help("Skip the *_mem_* memory metrics (they cost a sampling thread).")
    )
    project: str = field(
        default="huggingface", metadata=_help("Project name for Trackio (not integrated here: kept for scripts).")
    )
    trackio_space_id: str | None = field(default=None, metadata=_help("Trackio Space id (Trackio is not integrated)."))
    trackio_bucket_id: str | None = field(default=None, metadata=_help("Trackio bucket id (Trackio is not integrated)."))
    trackio_static_space_id: str | None = field(
        default=None, metadata=_help("Trackio static Space id (Trackio is not integrated).")
    )
