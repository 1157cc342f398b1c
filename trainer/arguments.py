"""TrainingArguments: every knob of a run, with help text, validated in one place.

The help of each field lives in ``field(metadata={"help": ...})`` so the CLI ``--help``,
the docs and the YAML presets come from one source. ``validate()`` holds every rule; it runs
in ``__post_init__`` and again when a Trainer is built (arguments may be edited in between).
Steps given as a float below 1 (``logging_steps=0.1``) are a fraction of the total steps,
resolved by :func:`resolve_steps` once the total is known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callbacks.strategies import IntervalStrategy, SaveStrategy
from integrations.hub import HUB_STRATEGIES

from .optim import OPTIMIZER_NAMES, SCHEDULER_NAMES, parse_optim_args

LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "passive")
TORCH_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DDP_BACKENDS = ("gloo", "nccl", "mpi", "ccl", "hccl", "cncl", "mccl", "xccl")
INCLUDE_FOR_METRICS = ("inputs", "loss")


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


NONFINITE_LOSS = ("ignore", "skip", "stop")


@dataclass
class TrainingArguments:
    """Arguments of a training run. Names and defaults follow the Hugging Face Trainer's."""

    output_dir: str = field(
        default="trainer_output",
        metadata=_help("Where checkpoints, the final model and metrics files are written."),
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help(
            "Start over in an output_dir that already holds checkpoints (they are deleted when training "
            "starts). Without it, train() refuses such a directory unless resume_from_checkpoint is given."
        ),
    )
    do_train: bool = field(default=False, metadata=_help("Run training (read by scripts; train() always trains)."))
    do_eval: bool = field(
        default=False, metadata=_help("Run evaluation; set automatically when eval_strategy is not 'no'.")
    )
    do_predict: bool = field(default=False, metadata=_help("Run prediction on the test set (read by scripts)."))
    eval_strategy: str = field(
        default="no",
        metadata=_help("When to evaluate during training.", choices=IntervalStrategy.values()),
    )
    evaluation_strategy: str | None = field(
        default=None, metadata=_help("Old name of eval_strategy, accepted as an alias.")
    )
    eval_steps: float | None = field(
        default=None,
        metadata=_help(
            "Evaluate every N update steps with eval_strategy='steps'; a float < 1 is a fraction of the total "
            "steps. Defaults to logging_steps."
        ),
    )
    eval_delay: float = field(
        default=0,
        metadata=_help("Epochs (eval_strategy='epoch') or steps ('steps') to wait before the first evaluation."),
    )
    eval_on_start: bool = field(
        default=False,
        metadata=_help("Evaluate once before the first training step (a new run, not a resumed one): a sanity check "
                       "of the evaluation and compute_metrics before hours of training."),
    )
    prediction_loss_only: bool = field(
        default=False, metadata=_help("In evaluate/predict, return only the loss (no predictions or metrics).")
    )
    per_device_train_batch_size: int = field(default=8, metadata=_help("Training batch size per device."))
    per_device_eval_batch_size: int = field(default=8, metadata=_help("Evaluation batch size per device."))
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("Micro-batches whose gradients are summed before each optimizer step.")
    )
    eval_accumulation_steps: int | None = field(
        default=None,
        metadata=_help(
            "Move accumulated predictions to the CPU every N evaluation batches (saves device memory); "
            "None keeps them on the device until the end. On the CPU they are stored at every batch."
        ),
    )
    eval_do_concat_batches: bool = field(
        default=True,
        metadata=_help("Concatenate the predictions, labels and inputs of all batches into one array each; False "
                       "keeps a list with one array per batch (outputs whose shapes vary beyond dimension 1)."),
    )
    batch_eval_metrics: bool = field(
        default=False,
        metadata=_help("Call compute_metrics(eval_prediction, compute_result) at every batch instead of once with "
                       "every prediction: nothing is accumulated; compute_result=True at the last batch."),
    )
    include_for_metrics: list[str] = field(
        default_factory=list,
        metadata=_help("Extra fields for compute_metrics: 'inputs' (EvalPrediction.inputs, the main input) and/or "
                       "'loss' (EvalPrediction.losses, each sample's batch loss)."),
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
    warmup_steps: int = field(default=0, metadata=_help("Warm-up steps; when > 0 overrides warmup_ratio."))
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
                       "attention_mask keeps."),
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
    profile: bool = field(
        default=False,
        metadata=_help("Profile training steps 3-5 with torch.profiler (ProfilerCallback with its defaults) and write "
                       "the trace under logging_dir/profile, viewable in TensorBoard or Perfetto."),
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
                       "or whose optimizer.pt is lost): the weights, step, epoch and learning-rate schedule position "
                       "are restored, the optimizer starts fresh. Not bit-exact; the epoch's data starts over."),
    )
    seed: int = field(default=42, metadata=_help("Seed set before the model is built and training starts."))
    full_determinism: bool = field(
        default=False,
        metadata=_help("Bitwise-reproducible runs: seed everything and make torch use deterministic algorithms only "
                       "(torch.use_deterministic_algorithms, cuDNN deterministic, CUBLAS_WORKSPACE_CONFIG set), "
                       "dataloader workers seeded from the seed. Slower on GPUs; an op with no deterministic "
                       "implementation raises."),
    )
    data_seed: int | None = field(
        default=None, metadata=_help("Seed of the data samplers' shuffling; defaults to seed.")
    )
    fp16: bool = field(default=False, metadata=_help("float16 mixed precision with a gradient scaler."))
    bf16: bool = field(default=False, metadata=_help("bfloat16 mixed precision."))
    fp16_full_eval: bool = field(default=False, metadata=_help("Evaluate with the model cast to float16."))
    bf16_full_eval: bool = field(default=False, metadata=_help("Evaluate with the model cast to bfloat16."))
    tf32: bool | None = field(
        default=None, metadata=_help("Allow TF32 matmuls on Ampere or newer CUDA GPUs; None leaves torch's default.")
    )
    use_cpu: bool = field(default=False, metadata=_help("Train on the CPU even when a GPU is available."))
    local_rank: int = field(
        default=-1, metadata=_help("Rank of this process on its node; set by the launcher (LOCAL_RANK).")
    )
    ddp_backend: str | None = field(
        default=None,
        metadata=_help("torch.distributed backend; default nccl with CUDA, gloo on the CPU.", choices=DDP_BACKENDS),
    )
    ddp_timeout: int = field(default=1800, metadata=_help("Seconds a collective may wait before failing."))
    ddp_find_unused_parameters: bool | None = field(
        default=None,
        metadata=_help("DistributedDataParallel find_unused_parameters (for models whose forward skips parameters); "
                       "default False, or True with gradient checkpointing off and unused parameters present."),
    )
    ddp_bucket_cap_mb: int | None = field(
        default=None, metadata=_help("DistributedDataParallel gradient bucket size in MB; default torch's 25.")
    )
    ddp_broadcast_buffers: bool | None = field(
        default=None, metadata=_help("DistributedDataParallel broadcast_buffers (BatchNorm statistics); default True.")
    )
    log_on_each_node: bool = field(
        default=True,
        metadata=_help("In multi-node runs, apply log_level on each node's main process (False: only on the "
                       "global main; the others use log_level_replica)."),
    )
    deepspeed: str | dict | None = field(
        default=None,
        metadata=_help("DeepSpeed ZeRO: a JSON config file path or a dict; \"auto\" values are filled from these "
                       "arguments (see integrations/deepspeed.py and configs/ds_zero*.json)."),
    )
    sharded_ddp: str | list | None = field(
        default=None,
        metadata=_help("FairScale sharded DDP: 'simple' (OSS optimizer + ShardedDataParallel; CPU or GPU). "
                       "'zero_dp_2', 'zero_dp_3', 'offload' are FairScale's FSDP and need CUDA. FairScale is "
                       "archived: prefer fsdp='full_shard'."),
    )
    fsdp: str | list | None = field(
        default=None,
        metadata=_help("torch FSDP2: 'full_shard' or 'shard_grad_op', optionally with 'offload' "
                       "(e.g. 'full_shard offload')."),
    )
    fsdp_config: str | dict | None = field(
        default=None,
        metadata=_help("FSDP options as a dict or JSON file: transformer_layer_cls_to_wrap, min_num_params, "
                       "state_dict_type ('full' or 'sharded'), reshard_after_forward."),
    )
    dataloader_drop_last: bool = field(default=False, metadata=_help("Drop the last incomplete batch."))
    dataloader_num_workers: int = field(
        default=0, metadata=_help("Worker processes of the dataloaders; 0 loads in the main process.")
    )
    dataloader_pin_memory: bool = field(default=True, metadata=_help("Pin host memory of batches (CUDA only)."))
    dataloader_persistent_workers: bool = field(
        default=False, metadata=_help("Keep dataloader workers alive between epochs (needs dataloader_num_workers > 0).")
    )
    past_index: int = field(
        default=-1,
        metadata=_help("Index of the model output holding past state (mems) to feed back at the next step; -1: none."),
    )
    run_name: str | None = field(
        default=None, metadata=_help("Name of the run for logging backends; defaults to output_dir.")
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata=_help("Print logs instead of showing progress bars; default: True when log level is above warning."),
    )
    remove_unused_columns: bool = field(
        default=True,
        metadata=_help("Drop datasets.Dataset columns that the model's forward() does not accept."),
    )
    label_names: list[str] | None = field(
        default=None,
        metadata=_help("Input keys holding the labels; default ['labels'] (or the model's label arguments)."),
    )
    load_best_model_at_end: bool = field(
        default=False,
        metadata=_help("Load the best checkpoint (by metric_for_best_model) when training ends."),
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata=_help("Metric comparing checkpoints, e.g. 'eval_loss' or 'accuracy'; default 'loss' with "
                       "load_best_model_at_end."),
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata=_help("Whether a larger metric_for_best_model is better; default False for names ending in 'loss'."),
    )
    ignore_data_skip: bool = field(
        default=False,
        metadata=_help("When resuming, start the data from the beginning instead of the saved position."),
    )
    label_smoothing_factor: float = field(
        default=0.0, metadata=_help("Label smoothing epsilon for classification losses (0 disables).")
    )
    optim: str = field(default="adamw_torch", metadata=_help("Optimizer.", choices=list(OPTIMIZER_NAMES)))
    optim_args: str | None = field(
        default=None, metadata=_help("Extra optimizer keyword arguments as 'key=value,key2=value2'.")
    )
    group_by_length: bool = field(
        default=False, metadata=_help("Batch training samples of similar length together (less padding).")
    )
    length_column_name: str = field(
        default="length", metadata=_help("Dataset column with precomputed lengths for group_by_length.")
    )
    push_to_hub: bool = field(
        default=False,
        metadata=_help("Push the model to the Hugging Face Hub as hub_strategy says (uploads run in the background)."),
    )
    hub_model_id: str | None = field(
        default=None, metadata=_help("Repo to push to, 'name' or 'namespace/name'; default: output_dir's name.")
    )
    hub_strategy: str = field(
        default="every_save",
        metadata=_help("What is pushed: 'end' (on save_model/push_to_hub), 'every_save' (the model at each save), "
                       "'checkpoint' (also the checkpoint as last-checkpoint/, resumable), 'all_checkpoints'.",
                       choices=HUB_STRATEGIES),
    )
    hub_token: str | None = field(
        default=None, repr=False,
        metadata=_help("Token for the Hub (default: huggingface_hub's, HF_TOKEN or `hf auth login`); never "
                       "printed nor saved."),
    )
    hub_private_repo: bool | None = field(
        default=None, metadata=_help("Create the repo private (default: the Hub's default for your account).")
    )
    hub_revision: str | None = field(default=None, metadata=_help("Branch to push to (created if missing)."))
    hub_always_push: bool = field(
        default=False,
        metadata=_help("Queue every push; by default a push asked for while the previous one runs is skipped."),
    )
    report_to: str | list[str] | None = field(
        default="none", metadata=_help("Logging backends: 'none', 'all', a name or a list of names.")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations in backward to save memory (model must support it).")
    )
    gradient_checkpointing_kwargs: dict | str | None = field(
        default=None, metadata=_help("Keyword arguments of model.gradient_checkpointing_enable().")
    )
    torch_compile: bool = field(default=False, metadata=_help("Compile the model with torch.compile."))
    torch_compile_backend: str | None = field(
        default=None, metadata=_help("torch.compile backend (implies torch_compile); default 'inductor'.")
    )
    torch_compile_mode: str | None = field(
        default=None, metadata=_help("torch.compile mode (implies torch_compile).", choices=TORCH_COMPILE_MODES)
    )
    include_inputs_for_metrics: bool = field(
        default=False, metadata=_help("Old form of include_for_metrics=['inputs'], accepted as an alias.")
    )
    auto_find_batch_size: bool = field(
        default=False,
        metadata=_help("On an out-of-memory error, halve the batch size and retry (accelerate's finder)."),
    )
    skip_memory_metrics: bool = field(
        default=True, metadata=_help("Skip the *_mem_* memory metrics (they cost a sampling thread).")
    )

    # ------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if self.evaluation_strategy is not None:
            if self.eval_strategy not in ("no", self.evaluation_strategy):
                raise ValueError(
                    f"evaluation_strategy={self.evaluation_strategy!r} and eval_strategy={self.eval_strategy!r} "
                    "disagree: evaluation_strategy is the old name of eval_strategy, give only eval_strategy"
                )
            self.eval_strategy = self.evaluation_strategy
            self.evaluation_strategy = None
        self.output_dir = os.fspath(self.output_dir)
        check_field_types(self)
        for name, enum in (
            ("eval_strategy", IntervalStrategy),
            ("logging_strategy", IntervalStrategy),
            ("save_strategy", SaveStrategy),
        ):
            value = getattr(self, name)
            if value not in enum.values():
                raise ValueError(f"{name}={value!r} is not valid; choose from {enum.values()}")
            setattr(self, name, enum(value))
        for name in ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{name}={value!r} is not valid JSON: write it as '{{\"key\": 1}}' ({e})") from e
        if isinstance(self.include_for_metrics, str):
            self.include_for_metrics = [s.strip() for s in self.include_for_metrics.split(",") if s.strip()]
        self.include_for_metrics = list(self.include_for_metrics)
        if self.include_inputs_for_metrics and "inputs" not in self.include_for_metrics:
            self.include_for_metrics.append("inputs")
        if isinstance(self.report_to, str) and "," in self.report_to:
            self.report_to = [s.strip() for s in self.report_to.split(",")]
        if self.eval_strategy != IntervalStrategy.NO:
            self.do_eval = True
        if self.eval_strategy == IntervalStrategy.STEPS and self.eval_steps is None:
            self.eval_steps = self.logging_steps
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.torch_compile_backend is not None or self.torch_compile_mode is not None:
            self.torch_compile = True
        if self.torch_compile and self.torch_compile_backend is None:
            self.torch_compile_backend = "inductor"
        if self.local_rank == -1 and "LOCAL_RANK" in os.environ:
            self.local_rank = int(os.environ["LOCAL_RANK"])
        if self.logging_dir is None:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            self.logging_dir = os.path.join(self.output_dir, "runs", f"{stamp}_{socket.gethostname()}")
        if self.run_name is None:
            self.run_name = self.output_dir
        if self.disable_tqdm is None:
            self.disable_tqdm = self.log_level in ("error", "critical")
        self.validate()

    def validate(self) -> None:
        """Check every rule; raise ValueError naming the argument, its value and the fix."""
        _check_positive_int(self, "per_device_train_batch_size", "per_device_eval_batch_size",
                            "gradient_accumulation_steps")
        if self.eval_accumulation_steps is not None:
            _check_positive_int(self, "eval_accumulation_steps")
        if self.include_num_input_tokens_seen not in (True, False, "all", "non_padding", "no"):
            raise ValueError(f"include_num_input_tokens_seen={self.include_num_input_tokens_seen!r} is not valid; "
                             "choose True/'all' (every token), 'non_padding' or False/'no'")
        if self.nonfinite_loss not in NONFINITE_LOSS:
            raise ValueError(f"nonfinite_loss={self.nonfinite_loss!r} is not valid; choose from {list(NONFINITE_LOSS)}")
        if self.nonfinite_loss == "skip" and self.deepspeed:
            raise ValueError("nonfinite_loss='skip' cannot be used with deepspeed: its engine owns the optimizer step "
                             "(and its fp16 loss scaler already skips overflowing steps); use 'stop' or 'ignore'")
        if self.resume_weights_only and (self.deepspeed or self.fsdp):
            raise ValueError("resume_weights_only=True works without an engine: DeepSpeed and FSDP restore their own "
                             "checkpoint files; resume those with resume_weights_only=False")
        if self.hub_strategy not in HUB_STRATEGIES:
            raise ValueError(f"hub_strategy={self.hub_strategy!r} is not valid; choose from {list(HUB_STRATEGIES)}")
        unknown = sorted(set(self.include_for_metrics) - set(INCLUDE_FOR_METRICS))
        if unknown:
            raise ValueError(f"include_for_metrics={self.include_for_metrics}: unknown {unknown}; choose from "
                             f"{list(INCLUDE_FOR_METRICS)}")
        for name in ("learning_rate", "weight_decay", "warmup_steps", "eval_delay", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm} must be >= 0 (0 or None disables clipping)")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1]: it is a fraction of the total steps")
        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ValueError(f"label_smoothing_factor={self.label_smoothing_factor} must be in [0, 1)")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.adam_epsilon <= 0:
            raise ValueError(f"adam_epsilon={self.adam_epsilon} must be > 0")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps={self.max_steps} must be a positive number of steps, or -1 to use num_train_epochs")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs={self.num_train_epochs} must be > 0 (or set max_steps > 0)")
        _check_steps(self, "logging_steps", self.logging_strategy == IntervalStrategy.STEPS)
        _check_steps(self, "eval_steps", self.eval_strategy == IntervalStrategy.STEPS)
        _check_steps(self, "save_steps", self.save_strategy == SaveStrategy.STEPS)
        if self.fp16 and self.bf16:
            raise ValueError("fp16=True and bf16=True were both set: choose one mixed precision mode")
        if self.fp16_full_eval and self.bf16_full_eval:
            raise ValueError("fp16_full_eval=True and bf16_full_eval=True were both set: choose one")
        if self.tf32:
            import torch

            if not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8):
                raise ValueError("tf32=True needs an Ampere or newer CUDA GPU; set tf32=None (or False) on this machine")
        if self.optim not in OPTIMIZER_NAMES:
            raise ValueError(f"optim={self.optim!r} is not a known optimizer; choose from: {', '.join(OPTIMIZER_NAMES)}")
        if self.optim_args:
            parse_optim_args(self.optim_args)
        if self.lr_scheduler_type not in SCHEDULER_NAMES:
            raise ValueError(
                f"lr_scheduler_type={self.lr_scheduler_type!r} is not a known schedule; "
                f"choose from: {', '.join(SCHEDULER_NAMES)}"
            )
        for name in ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name}={value!r} must be a dict (or a JSON object string)")
        for name in ("log_level", "log_level_replica"):
            if getattr(self, name) not in LOG_LEVELS:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose from {list(LOG_LEVELS)}")
        if self.ddp_backend is not None and self.ddp_backend not in DDP_BACKENDS:
            raise ValueError(f"ddp_backend={self.ddp_backend!r} is not valid; choose from {list(DDP_BACKENDS)}")
        if self.ddp_backend == "nccl" and (self.use_cpu or not _cuda_available()):
            raise ValueError("ddp_backend='nccl' needs CUDA GPUs; on the CPU use ddp_backend='gloo' (or leave it unset)")
        if self.ddp_timeout <= 0:
            raise ValueError(f"ddp_timeout={self.ddp_timeout} must be > 0 seconds")
        if self.ddp_bucket_cap_mb is not None and self.ddp_bucket_cap_mb <= 0:
            raise ValueError(f"ddp_bucket_cap_mb={self.ddp_bucket_cap_mb} must be > 0 (or None for torch's default)")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ValueError(f"save_total_limit={self.save_total_limit} must be >= 1, or None to keep every checkpoint")
        if self.dataloader_persistent_workers and self.dataloader_num_workers == 0:
            raise ValueError(
                "dataloader_persistent_workers=True needs worker processes: set dataloader_num_workers > 0"
            )
        if self.torch_compile_mode is not None and self.torch_compile_mode not in TORCH_COMPILE_MODES:
            raise ValueError(f"torch_compile_mode={self.torch_compile_mode!r} is not valid; choose from {list(TORCH_COMPILE_MODES)}")
        if self.save_strategy == SaveStrategy.BEST and self.metric_for_best_model is None:
            raise ValueError("save_strategy='best' needs metric_for_best_model, e.g. metric_for_best_model='eval_loss'")
        if self.metric_for_best_model is not None and self.eval_strategy == IntervalStrategy.NO and (
            self.load_best_model_at_end or self.save_strategy == SaveStrategy.BEST
        ):
            raise ValueError(
                "load_best_model_at_end / save_strategy='best' compare evaluation metrics, but eval_strategy='no': "
                "set eval_strategy='steps' or 'epoch'"
            )
        if self.load_best_model_at_end and self.save_strategy != SaveStrategy.BEST:
            if self.save_strategy == SaveStrategy.NO:
                raise ValueError(
                    "load_best_model_at_end=True needs checkpoints, but save_strategy='no': set save_strategy to "
                    f"{self.eval_strategy.value!r} (the eval_strategy) or 'best'"
                )
            if self.eval_strategy != self.save_strategy:
                raise ValueError(
                    "load_best_model_at_end=True requires save_strategy to match eval_strategy: got "
                    f"save_strategy={self.save_strategy.value!r} and eval_strategy={self.eval_strategy.value!r}; "
                    "set both to the same value"
                )
            if self.eval_strategy == IntervalStrategy.STEPS and not _is_multiple(self.save_steps, self.eval_steps):
                raise ValueError(
                    "load_best_model_at_end=True requires save_steps to be a multiple of eval_steps (so every saved "
                    f"checkpoint was evaluated): got save_steps={self.save_steps} and eval_steps={self.eval_steps}"
                )
        self._validate_parallel()
        from integrations.reporting import resolve_report_to

        resolve_report_to(self.report_to)

    def _validate_parallel(self) -> None:
        """deepspeed / sharded_ddp / fsdp: one at a time, options known, CUDA-only modes refused on the CPU."""
        chosen = [name for name in ("deepspeed", "sharded_ddp", "fsdp") if getattr(self, name)]
        if len(chosen) > 1:
            raise ValueError(f"{' and '.join(chosen)} were both set: choose one way to shard the training")
        if self.sharded_ddp:
            from integrations.fairscale import FULLY_SHARDED, parse_sharded_ddp

            options = parse_sharded_ddp(self.sharded_ddp)
            if any(o in FULLY_SHARDED for o in options) and (self.use_cpu or not _cuda_available()):
                raise ValueError(
                    f"sharded_ddp={self.sharded_ddp!r} is FairScale's FullyShardedDataParallel, which needs CUDA GPUs. "
                    "On the CPU use sharded_ddp='simple' (OSS + ShardedDataParallel) or fsdp='full_shard' (torch "
                    "FSDP2, the maintained successor of FairScale)"
                )
        if self.fsdp:
            from integrations.fsdp import load_fsdp_config, parse_fsdp

            parse_fsdp(self.fsdp)
            load_fsdp_config(self.fsdp_config)
        elif self.fsdp_config:
            raise ValueError("fsdp_config is set but fsdp is not: set fsdp='full_shard' (or remove fsdp_config)")
        if (self.sharded_ddp or self.fsdp) and self.fp16:
            raise ValueError(f"fp16=True with {chosen[0]}: the gradient scaler does not support sharded gradients "
                             "here; use bf16=True")
        if chosen and self.save_async:
            raise ValueError(f"save_async=True with {chosen[0]}: the engine writes its sharded checkpoint files itself, "
                             "from every process, during the save; unset save_async")
        if chosen and self.save_on_each_node:
            raise ValueError(f"save_on_each_node=True with {chosen[0]}: sharded checkpoints are written by every "
                             "process into one directory, which needs a filesystem shared by the nodes; unset it")
        if self.deepspeed:
            from integrations.deepspeed import load_config

            load_config(self.deepspeed)

    # ------------------------------------------------------------------------------------
    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def world_size(self) -> int:
        return _dist_value("get_world_size", "WORLD_SIZE", 1)

    @property
    def process_index(self) -> int:
        return _dist_value("get_rank", "RANK", 0)

    @property
    def local_process_index(self) -> int:
        return self.local_rank if self.local_rank != -1 else 0

    @property
    def device(self):
        """This process's device: ``cuda:{local_rank}`` with CUDA (unless use_cpu), else the CPU."""
        import torch

        if self.use_cpu or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_process_index)

    @property
    def n_gpu(self) -> int:
        """GPUs this process uses: 1 with CUDA (one device per process), else 0."""
        return 0 if self.device.type == "cpu" else 1

    @property
    def should_log(self) -> bool:
        return self.process_index == 0

    @property
    def mixed_precision(self) -> str:
        return "fp16" if self.fp16 else "bf16" if self.bf16 else "no"

    @contextlib.contextmanager
    def main_process_first(self, local: bool = True, desc: str = "work"):
        """Run the body on the main process first (e.g. dataset preprocessing), then on the others."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or self.world_size == 1:
            yield
            return
        is_main = (self.local_process_index if local else self.process_index) == 0
        if not is_main:
            dist.barrier()
        yield
        if is_main:
            dist.barrier()

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (enums as strings), aliases left out."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "evaluation_strategy":
                continue
            value = getattr(self, f.name)
            if f.name.endswith("_token") and value is not None:
                value = f"<{f.name.upper()}>"  # a secret: never written to training_args.json or logged
            out[f.name] = value.value if isinstance(value, (IntervalStrategy, SaveStrategy)) else value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_sanitized_dict(self) -> dict[str, Any]:
        """Only int/float/str/bool/None values (lists and dicts as strings), for logging backends."""
        return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingArguments:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainingArguments field(s): {unknown}; see `trainforge train --help` for the list")
        return cls(**data)

    @classmethod
    def from_json(cls, path_or_text: str) -> TrainingArguments:
        """From a JSON file path or a JSON string."""
        text = path_or_text
        if not path_or_text.lstrip().startswith("{"):
            with open(path_or_text, encoding="utf-8") as f:
                text = f.read()
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_yaml(cls, path: str) -> TrainingArguments:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str) -> TrainingArguments:
        """From a .json, .yaml or .yml file."""
        if path.endswith((".yaml", ".yml")):
            return cls.from_yaml(path)
        if path.endswith(".json"):
            return cls.from_json(path)
        raise ValueError(f"config file {path!r}: use a .json, .yaml or .yml file")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    def __str__(self) -> str:
        body = ",\n".join(f"  {k}={v!r}" for k, v in sorted(self.to_dict().items()))
        return f"{type(self).__name__}(\n{body}\n)"

    __repr__ = __str__


def resolve_steps(value: float, max_steps: int) -> int:
    """Steps argument -> whole steps: a float below 1 is a fraction of ``max_steps`` (rounded up)."""
    if value < 1:
        return max(1, math.ceil(max_steps * value))
    return int(value)


def _check_positive_int(args: TrainingArguments, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be a whole number >= 1")


_KINDS = {"bool": (bool,), "int": (numbers.Integral,), "float": (numbers.Real,), "str": (str,), "None": (type(None),),
          "list": (list, tuple), "list[str]": (list, tuple), "dict": (dict,)}
_KIND_NAMES = {"bool": "True or False", "int": "an integer", "float": "a number", "str": "a string", "None": "None",
               "list": "a list", "list[str]": "a list of strings", "dict": "a dict"}
_FIELD_KINDS: dict[type, dict[str, list[str]]] = {}


def _field_kinds(cls) -> dict[str, list[str]]:
    """``{field: ['int', 'None']}`` from the fields' annotations; fields with other annotations are left out."""
    kinds = _FIELD_KINDS.get(cls)
    if kinds is None:
        kinds = {}
        for f in dataclasses.fields(cls):
            parts = [p.strip() for p in str(f.type).split("|")]
            if f.init and all(p in _KINDS for p in parts):
                kinds[f.name] = parts
        _FIELD_KINDS[cls] = kinds
    return kinds


def check_field_types(args) -> None:
    """Refuse a value whose type its field cannot take (``learning_rate="1e-4"``), naming the field and the
    type it takes. An int is a float here; a bool is not an int."""
    for name, kinds in _field_kinds(type(args)).items():
        value = getattr(args, name)
        if isinstance(value, bool) and "bool" not in kinds:
            ok = False
        else:
            ok = any(isinstance(value, _KINDS[k]) for k in kinds)
        if not ok:
            expected = " or ".join(_KIND_NAMES[k] for k in kinds)
            raise ValueError(f"{name}={value!r} must be {expected}, not {type(value).__name__}"
                             + _conversion_hint(name, value, kinds))


def _conversion_hint(name: str, value, kinds: list[str]) -> str:
    if not isinstance(value, str):
        return ""
    for kind in kinds:
        try:
            converted = {"int": int, "float": float}[kind](value)
        except (KeyError, ValueError):
            continue
        return f": pass {name}={converted!r} (the command line and config files convert strings for you)"
    return ""


def _check_steps(args: TrainingArguments, name: str, used: bool) -> None:
    value = getattr(args, name)
    if value is None:
        if used:
            raise ValueError(f"{name} must be set when its strategy is 'steps'")
        return
    if value <= 0:
        raise ValueError(f"{name}={value} must be > 0: a whole number of steps, or a float < 1 for a fraction of the total")
    if value > 1 and value != int(value):
        raise ValueError(
            f"{name}={value} must be a whole number of steps when > 1 (a float below 1 means a fraction of the total)"
        )


def _is_multiple(save_steps: float, eval_steps: float) -> bool:
    if save_steps < 1 or eval_steps < 1:  # both fractions: compare the ratio exactly enough
        ratio = save_steps / eval_steps
        return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1
    return int(save_steps) % int(eval_steps) == 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _dist_value(getter: str, env: str, default: int) -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return getattr(dist, getter)()
    return int(os.environ.get(env, default))
