"""TrainingArguments: every knob of a run, with help text; its rules are in ``argument_checks.py``.

The help of each field lives in ``field(metadata={"help": ...})`` so the CLI ``--help``,
the docs and the YAML presets come from one source. ``validate()`` runs every rule; it runs
in ``__post_init__`` and again when a Trainer is built (arguments may be edited in between).
Steps given as a float below 1 (``logging_steps=0.1``) are a fraction of the total steps,
resolved by :func:`resolve_steps` once the total is known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from callbacks.strategies import IntervalStrategy, SaveStrategy

from .argument_checks import (
    DDP_BACKENDS,
    HUB_STRATEGIES,
    LOG_LEVELS,
    NONFINITE_LOSS,
    OPTIMIZER_NAMES,
    SCHEDULER_NAMES,
    TORCH_COMPILE_MODES,
    check_arguments,
    normalize_arguments,
)


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}




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
        """Aliases and string forms normalised, defaults that depend on other fields filled, then validated
        (``trainer/argument_checks.py``)."""
        normalize_arguments(self)

    def validate(self) -> None:
        """Check every rule (``trainer/argument_checks.py``); raise ValueError naming the argument, its value
        and the fix."""
        check_arguments(self)

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


def _dist_value(getter: str, env: str, default: int) -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return getattr(dist, getter)()
    return int(os.environ.get(env, default))
