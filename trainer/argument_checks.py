"""The rules of ``TrainingArguments``: ``check_arguments`` runs them all, raising a ValueError that names
the argument, its value and the fix. The engines' own rules live with the engines
(``integrations/parallel.py`` calls them); this module holds the rest, and the type check of every field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import socket
import types
import typing
from datetime import datetime

from callbacks.strategies import IntervalStrategy, SaveStrategy
from integrations.hub import HUB_STRATEGIES
from integrations.parallel import validate_parallel_arguments
from integrations.reporting import resolve_report_to

from .optim import ALL_OPTIMIZER_NAMES, OPTIMIZER_NAMES, SCHEDULER_NAMES, parse_optim_args
from .optimizers_external import check_external_optimizer

LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "passive")
TORCH_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DDP_BACKENDS = ("gloo", "nccl", "mpi", "ccl", "hccl", "cncl", "mccl", "xccl")
INCLUDE_FOR_METRICS = ("inputs", "loss")
NONFINITE_LOSS = ("ignore", "skip", "stop")


def normalize_arguments(args) -> None:
    """What ``TrainingArguments.__post_init__`` does: the old names (``evaluation_strategy``) and string forms
    (enums, JSON, comma lists) turned into values, the defaults that depend on other fields, then the checks."""
    if args.evaluation_strategy is not None:
        if args.eval_strategy not in ("no", args.evaluation_strategy):
            raise ValueError(
                f"evaluation_strategy={args.evaluation_strategy!r} and eval_strategy={args.eval_strategy!r} "
                "disagree: evaluation_strategy is the old name of eval_strategy, give only eval_strategy"
            )
        args.eval_strategy = args.evaluation_strategy
        args.evaluation_strategy = None
    args.output_dir = os.fspath(args.output_dir)
    if args.debug is None:  # transformers' HfArgumentParser gives a list field without a default factory None
        args.debug = ""
    check_field_types(args)
    for name, enum in (
        ("eval_strategy", IntervalStrategy),
        ("logging_strategy", IntervalStrategy),
        ("save_strategy", SaveStrategy),
    ):
        value = getattr(args, name)
        if value not in enum.values():
            raise ValueError(f"{name}={value!r} is not valid; choose from {enum.values()}")
        setattr(args, name, enum(value))
    if args.train_sampling_strategy == "group_by_length" or args.group_by_length:  # transformers 5's name, and ours
        args.group_by_length, args.train_sampling_strategy = True, "group_by_length"
    for name in ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs", "activation_checkpointing_kwargs",
                 "liger_kernel_config", "accelerator_config"):
        value = getattr(args, name)
        if isinstance(value, str) and name == "accelerator_config" and not value.lstrip().startswith("{"):
            with open(value, encoding="utf-8") as f:  # transformers takes a JSON file's path too
                value = f.read()
        if isinstance(value, str):
            try:
                setattr(args, name, json.loads(value))
            except json.JSONDecodeError as e:
                raise ValueError(f"{name}={value!r} is not valid JSON: write it as '{{\"key\": 1}}' ({e})") from e
    # transformers 5's names for gradient checkpointing: a name set (not None) wins, then both names agree
    if args.activation_checkpointing is not None:
        args.gradient_checkpointing = bool(args.activation_checkpointing)
    args.activation_checkpointing = args.gradient_checkpointing
    if args.activation_checkpointing_kwargs is not None:
        args.gradient_checkpointing_kwargs = args.activation_checkpointing_kwargs
    args.activation_checkpointing_kwargs = args.gradient_checkpointing_kwargs
    if isinstance(args.include_for_metrics, str):
        args.include_for_metrics = [s.strip() for s in args.include_for_metrics.split(",") if s.strip()]
    args.include_for_metrics = list(args.include_for_metrics)
    if args.include_inputs_for_metrics and "inputs" not in args.include_for_metrics:
        args.include_for_metrics.append("inputs")
    if isinstance(args.report_to, str) and "," in args.report_to:
        args.report_to = [s.strip() for s in args.report_to.split(",")]
    args.report_to = resolve_report_to(args.report_to)  # a list of backend names, as transformers keeps it
    if args.eval_strategy != IntervalStrategy.NO:
        args.do_eval = True
    if args.eval_strategy == IntervalStrategy.STEPS and args.eval_steps is None:
        args.eval_steps = args.logging_steps
    if args.load_best_model_at_end and args.metric_for_best_model is None:
        args.metric_for_best_model = "loss"
    if args.greater_is_better is None and args.metric_for_best_model is not None:
        args.greater_is_better = not args.metric_for_best_model.endswith("loss")
    if args.include_tokens_per_second and args.include_num_input_tokens_seen in (False, "no"):
        args.include_num_input_tokens_seen = True  # the rate needs the count
    if args.torch_compile_backend is not None or args.torch_compile_mode is not None:
        args.torch_compile = True
    if args.torch_compile and args.torch_compile_backend is None:
        args.torch_compile_backend = "inductor"
    if args.local_rank == -1 and "LOCAL_RANK" in os.environ:
        args.local_rank = int(os.environ["LOCAL_RANK"])
    if args.logging_dir is None:
        stamp = datetime.now().strftime("%b%d_%H-%M-%S")
        args.logging_dir = os.path.join(args.output_dir, "runs", f"{stamp}_{socket.gethostname()}")
    if args.run_name is None:
        args.run_name = args.output_dir
    if args.disable_tqdm is None:
        args.disable_tqdm = args.log_level in ("error", "critical")
    args.validate()  # a subclass (Seq2SeqTrainingArguments) adds its rules there


def check_arguments(args) -> None:
    """Check every rule; raise ValueError naming the argument, its value and the fix."""
    _check_positive_int(args, "per_device_train_batch_size", "per_device_eval_batch_size",
                        "gradient_accumulation_steps")
    if args.eval_accumulation_steps is not None:
        _check_positive_int(args, "eval_accumulation_steps")
    if args.include_num_input_tokens_seen not in (True, False, "all", "non_padding", "no"):
        raise ValueError(f"include_num_input_tokens_seen={args.include_num_input_tokens_seen!r} is not valid; "
                         "choose True/'all' (every token), 'non_padding' or False/'no'")
    if args.nonfinite_loss not in NONFINITE_LOSS:
        raise ValueError(f"nonfinite_loss={args.nonfinite_loss!r} is not valid; choose from {list(NONFINITE_LOSS)}")
    if args.hub_strategy not in HUB_STRATEGIES:
        raise ValueError(f"hub_strategy={args.hub_strategy!r} is not valid; choose from {list(HUB_STRATEGIES)}")
    unknown = sorted(set(args.include_for_metrics) - set(INCLUDE_FOR_METRICS))
    if unknown:
        raise ValueError(f"include_for_metrics={args.include_for_metrics}: unknown {unknown}; choose from "
                         f"{list(INCLUDE_FOR_METRICS)}")
    for name in ("learning_rate", "weight_decay", "warmup_steps", "eval_delay", "dataloader_num_workers"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}={value} must be >= 0" + ("" if math.isfinite(value) else " and finite"))
    if args.max_grad_norm is not None and args.max_grad_norm < 0:
        raise ValueError(f"max_grad_norm={args.max_grad_norm} must be >= 0 (0 or None disables clipping)")
    if not 0.0 <= args.warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio={args.warmup_ratio} must be in [0, 1]: it is a fraction of the total steps")
    if not 0.0 <= args.label_smoothing_factor < 1.0:
        raise ValueError(f"label_smoothing_factor={args.label_smoothing_factor} must be in [0, 1)")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise ValueError(f"{name}={getattr(args, name)} must be in [0, 1)")
    if args.adam_epsilon <= 0:
        raise ValueError(f"adam_epsilon={args.adam_epsilon} must be > 0")
    if args.max_steps == 0 or args.max_steps < -1:
        raise ValueError(f"max_steps={args.max_steps} must be a positive number of steps, or -1 to use num_train_epochs")
    if args.max_steps == -1 and args.num_train_epochs <= 0:
        raise ValueError(f"num_train_epochs={args.num_train_epochs} must be > 0 (or set max_steps > 0)")
    _check_steps(args, "logging_steps", args.logging_strategy == IntervalStrategy.STEPS)
    _check_steps(args, "eval_steps", args.eval_strategy == IntervalStrategy.STEPS)
    _check_steps(args, "save_steps", args.save_strategy == SaveStrategy.STEPS)
    if args.fp16 and args.bf16:
        raise ValueError("fp16=True and bf16=True were both set: choose one mixed precision mode")
    if args.fp16_full_eval and args.bf16_full_eval:
        raise ValueError("fp16_full_eval=True and bf16_full_eval=True were both set: choose one")
    if args.tf32:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8):
            raise ValueError("tf32=True needs an Ampere or newer CUDA GPU; set tf32=None (or False) on this machine")
    if args.optim not in ALL_OPTIMIZER_NAMES:
        raise ValueError(f"optim={args.optim!r} is not a known optimizer; choose from: {', '.join(ALL_OPTIMIZER_NAMES)}")
    if args.optim not in OPTIMIZER_NAMES:  # another library's: installed and integrated, or refused now
        check_external_optimizer(args.optim, args)
    if args.optim_args:
        parse_optim_args(args.optim_args)
    if args.lr_scheduler_type not in SCHEDULER_NAMES:
        raise ValueError(
            f"lr_scheduler_type={args.lr_scheduler_type!r} is not a known schedule; "
            f"choose from: {', '.join(SCHEDULER_NAMES)}"
        )
    for name in ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs", "liger_kernel_config"):
        value = getattr(args, name)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name}={value!r} must be a dict (or a JSON object string)")
    for name in ("log_level", "log_level_replica"):
        if getattr(args, name) not in LOG_LEVELS:
            raise ValueError(f"{name}={getattr(args, name)!r} is not valid; choose from {list(LOG_LEVELS)}")
    if args.ddp_backend is not None and args.ddp_backend not in DDP_BACKENDS:
        raise ValueError(f"ddp_backend={args.ddp_backend!r} is not valid; choose from {list(DDP_BACKENDS)}")
    if args.ddp_backend == "nccl" and (args.use_cpu or not _cuda_available()):
        raise ValueError("ddp_backend='nccl' needs CUDA GPUs; on the CPU use ddp_backend='gloo' (or leave it unset)")
    if args.ddp_timeout <= 0:
        raise ValueError(f"ddp_timeout={args.ddp_timeout} must be > 0 seconds")
    if args.ddp_bucket_cap_mb is not None and args.ddp_bucket_cap_mb <= 0:
        raise ValueError(f"ddp_bucket_cap_mb={args.ddp_bucket_cap_mb} must be > 0 (or None for torch's default)")
    if args.save_total_limit is not None and args.save_total_limit < 1:
        raise ValueError(f"save_total_limit={args.save_total_limit} must be >= 1, or None to keep every checkpoint")
    if args.dataloader_persistent_workers and args.dataloader_num_workers == 0:
        raise ValueError(
            "dataloader_persistent_workers=True needs worker processes: set dataloader_num_workers > 0"
        )
    if args.torch_compile_mode is not None and args.torch_compile_mode not in TORCH_COMPILE_MODES:
        raise ValueError(f"torch_compile_mode={args.torch_compile_mode!r} is not valid; choose from {list(TORCH_COMPILE_MODES)}")
    if args.save_strategy == SaveStrategy.BEST and args.metric_for_best_model is None:
        raise ValueError("save_strategy='best' needs metric_for_best_model, e.g. metric_for_best_model='eval_loss'")
    if args.metric_for_best_model is not None and args.eval_strategy == IntervalStrategy.NO and (
        args.load_best_model_at_end or args.save_strategy == SaveStrategy.BEST
    ):
        raise ValueError(
            "load_best_model_at_end / save_strategy='best' compare evaluation metrics, but eval_strategy='no': "
            "set eval_strategy='steps' or 'epoch'"
        )
    if args.load_best_model_at_end and args.save_strategy != SaveStrategy.BEST:
        if args.save_strategy == SaveStrategy.NO:
            raise ValueError(
                "load_best_model_at_end=True needs checkpoints, but save_strategy='no': set save_strategy to "
                f"{args.eval_strategy.value!r} (the eval_strategy) or 'best'"
            )
        if args.eval_strategy != args.save_strategy:
            raise ValueError(
                "load_best_model_at_end=True requires save_strategy to match eval_strategy: got "
                f"save_strategy={args.save_strategy.value!r} and eval_strategy={args.eval_strategy.value!r}; "
                "set both to the same value"
            )
        if args.eval_strategy == IntervalStrategy.STEPS and not _is_multiple(args.save_steps, args.eval_steps):
            raise ValueError(
                "load_best_model_at_end=True requires save_steps to be a multiple of eval_steps (so every saved "
                f"checkpoint was evaluated): got save_steps={args.save_steps} and eval_steps={args.eval_steps}"
            )
    validate_parallel_arguments(args)  # one engine at most, then the engine's own rules
    resolve_report_to(args.report_to)
    _check_not_supported(args)


# transformers' fields whose feature is not here: left at their defaults they are fine, set they are refused
NOT_SUPPORTED = {
    "parallelism_config": "accelerate's tensor/context parallelism is not supported; shard with fsdp, deepspeed or "
                          "DDP",
    "eval_use_gather_object": "only tensor predictions are gathered across processes",
    "debug": "transformers' debug options are not supported; nonfinite_loss='stop' stops at the first nan/inf loss",
}
# accelerator_config keys and the value trainforge works with (it builds its own dataloaders and sharding)
ACCELERATOR_DEFAULTS = {"split_batches": False, "dispatch_batches": None, "even_batches": True,
                        "use_seedable_sampler": True, "non_blocking": False, "gradient_accumulation_kwargs": None,
                        "use_configured_state": False}


def _check_not_supported(args) -> None:
    for name, why in NOT_SUPPORTED.items():
        value = getattr(args, name)
        if value not in (None, False, "", [], {}):
            raise ValueError(f"{name}={value!r} is not supported by trainforge: {why}; unset it")
    config = args.accelerator_config or {}
    if not isinstance(config, dict):
        raise ValueError(f"accelerator_config={config!r} must be a dict or a JSON file of one")
    changed = {k: v for k, v in config.items() if ACCELERATOR_DEFAULTS.get(k, object()) != v}
    if changed:
        raise ValueError(f"accelerator_config: {changed} is not supported by trainforge, which builds its own "
                         f"dataloaders and sharding; it works as {ACCELERATOR_DEFAULTS} (leave those keys out)")


def _check_positive_int(args, *names: str) -> None:
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
    """``{field: ['int', 'None']}`` from the class's annotations (not ``Field.type``, which a parser such as
    transformers' ``HfArgumentParser`` rewrites in place); fields with other annotations are left out."""
    kinds = _FIELD_KINDS.get(cls)
    if kinds is None:
        kinds = {}
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an annotation that does not resolve: that field is not type-checked
            hints = {f.name: f.type for f in dataclasses.fields(cls)}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            members = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
                typing.get_origin(hint) is typing.Union else (hint,)
            parts = [_kind_of(m) for m in members]
            if f.init and all(p in _KINDS for p in parts):
                kinds[f.name] = parts
        _FIELD_KINDS[cls] = kinds
    return kinds


def _kind_of(hint) -> str | None:
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is list:
        return "list[str]" if typing.get_args(hint) == (str,) else None
    return hint.__name__ if hint in (bool, int, float, str, list, dict) else None


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


def _check_steps(args, name: str, used: bool) -> None:
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
