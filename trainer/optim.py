"""Optimizers and learning-rate schedules by name, and the weight-decay parameter groups.

Optimizers (``optim``): adamw_torch (default), adamw_torch_fused, adafactor (transformers'
when installed, else torch's), sgd, adagrad, rmsprop.

Schedules (``lr_scheduler_type``), each a multiplier of the peak learning rate at step ``s``
with ``w`` warm-up steps and ``T`` total steps (warm-up is ``s / w`` for every schedule but
constant and reduce_lr_on_plateau); ``p = (s - w) / (T - w)``:

| name                  | after warm-up                                                      |
|-----------------------|--------------------------------------------------------------------|
| linear                | ``max(0, 1 - p)``                                                  |
| cosine                | ``max(0, 0.5 * (1 + cos(pi * 2 * num_cycles * p)))``, num_cycles=0.5 |
| cosine_with_restarts  | ``0.5 * (1 + cos(pi * ((num_cycles * p) % 1)))``, 0 once p >= 1   |
| polynomial            | ``((lr0 - lr_end) * (1 - p) ** power + lr_end) / lr0``; lr_end=1e-7, power=1 |
| constant              | 1 (no warm-up)                                                     |
| constant_with_warmup  | 1                                                                  |
| inverse_sqrt          | ``1 / sqrt((s + timescale - w) / timescale)``, timescale = w or 10,000 |
| reduce_lr_on_plateau  | torch's ReduceLROnPlateau, stepped with the evaluation metric      |
| cosine_with_min_lr    | cosine that ends at ``min_lr`` (or ``min_lr_rate`` x peak)         |
| cosine_warmup_with_min_lr | the same, its warm-up from ``warmup_lr_rate`` x peak (else ``(s + 1) / w``), its cosine one step ahead (transformers' shape) |
| warmup_stable_decay   | warm-up, 1 for ``num_stable_steps`` (default: what the decay leaves), then ``num_decay_steps`` of ``decay_type`` ('cosine', 'linear', '1-sqrt') down to ``min_lr_ratio`` |
| greedy                | transformers' GreedyLR (needs transformers), stepped with the evaluation metric |

``lr_scheduler_kwargs`` take transformers' parameter names (``num_cycles``, ``min_lr``, ``min_lr_rate``,
``warmup_lr_rate``, ``num_decay_steps``, ``num_stable_steps``, ``warmup_type``, ``decay_type``,
``min_lr_ratio``, ``power``, ``lr_end``, ``timescale``, and ReduceLROnPlateau's and GreedyLR's own).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from .optimizers_external import EXTERNAL_OPTIMIZERS, LOW_RANK, external_optimizer_class_and_kwargs, low_rank_groups

OPTIMIZER_NAMES = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop")

ALL_OPTIMIZER_NAMES = (*OPTIMIZER_NAMES, *EXTERNAL_OPTIMIZERS)  # what optim accepts (transformers' names)

SCHEDULER_NAMES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)


# -- parameter groups ---------------------------------------------------------------------
def is_norm_module(module: nn.Module) -> bool:
    """LayerNorm/BatchNorm/GroupNorm/InstanceNorm/RMSNorm, and any class whose name says 'Norm'."""
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of trainable parameters that get weight decay: not biases, not normalization weights."""
    names = set()
    for module_name, module in model.named_modules():
        if is_norm_module(module):
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if param.requires_grad and not param_name.endswith("bias"):
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed parameters with ``weight_decay``, the others with 0.

    With ``weight_decay == 0`` the split changes nothing, so all parameters form one group
    (an optimizer step then costs one call per step instead of two).
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if weight_decay == 0:
        return [{"params": [p for _, p in params], "weight_decay": 0.0}]
    decay = decay_parameter_names(model)
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


# -- optimizers ---------------------------------------------------------------------------
def parse_optim_args(text: str | None) -> dict:
    """'key=value,key2=value2' -> dict, values read as int, float, bool or str."""
    if not text:
        return {}
    out = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"optim_args={text!r}: {item!r} is not 'key=value'; write e.g. 'momentum=0.9,nesterov=True'")
        key, value = item.split("=", 1)
        out[key] = _parse_scalar(value)
    return out


def _parse_scalar(value: str):
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    if value in ("None", "none"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def optimizer_class_and_kwargs(args) -> tuple[type, dict]:
    """The optimizer class for ``args.optim`` and its keyword arguments (``optim_args`` applied last)."""
    adam = {"lr": args.learning_rate, "betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
    name = args.optim
    if name == "adamw_torch":
        cls, kwargs = torch.optim.AdamW, {**adam, "foreach": None}
    elif name == "adamw_torch_fused":
        cls, kwargs = torch.optim.AdamW, {**adam, "fused": True}
    elif name == "adafactor":
        cls, kwargs = _adafactor(args)
    elif name == "sgd":
        cls, kwargs = torch.optim.SGD, {"lr": args.learning_rate}
    elif name == "adagrad":
        cls, kwargs = torch.optim.Adagrad, {"lr": args.learning_rate}
    elif name == "rmsprop":
        cls, kwargs = torch.optim.RMSprop, {"lr": args.learning_rate}
    elif name in EXTERNAL_OPTIMIZERS:  # optim_args are applied there
        return external_optimizer_class_and_kwargs(name, args, parse_optim_args(args.optim_args))
    else:
        raise ValueError(f"optim={name!r} is not a known optimizer; choose from: {', '.join(ALL_OPTIMIZER_NAMES)}")
    kwargs.update(parse_optim_args(args.optim_args))
    return cls, kwargs


def _adafactor(args) -> tuple[type, dict]:
    try:
        from transformers.optimization import Adafactor
    except ImportError:
        return torch.optim.Adafactor, {"lr": args.learning_rate}
    return Adafactor, {"lr": args.learning_rate, "scale_parameter": False, "relative_step": False}


def create_optimizer(model: nn.Module, args, cls_and_kwargs: tuple | None = None) -> torch.optim.Optimizer:
    """The optimizer named by ``args.optim`` (or ``cls_and_kwargs``: a class and its keyword arguments) over
    :func:`parameter_groups`."""
    if cls_and_kwargs is not None:
        cls, kwargs = cls_and_kwargs
        return cls(parameter_groups(model, args.weight_decay), **kwargs)
    cls, kwargs = optimizer_class_and_kwargs(args)
    groups = parameter_groups(model, args.weight_decay)
    if args.optim in LOW_RANK:  # GaLore / APOLLO: the targeted weights get a group with the projection settings
        groups = low_rank_groups(args.optim, model, args, groups, parse_optim_args(args.optim_args))
    return cls(groups, **kwargs)


# -- schedules ----------------------------------------------------------------------------
def _warmup(step: int, warmup: int) -> float:
    return step / max(1, warmup)


def _progress(step: int, warmup: int, total: int) -> float:
    return (step - warmup) / max(1, total - warmup)


def _linear(step, *, warmup, total):
    if step < warmup:
        return _warmup(step, warmup)
    return max(0.0, 1.0 - _progress(step, warmup, total))


def _cosine(step, *, warmup, total, num_cycles=0.5):
    if step < warmup:
        return _warmup(step, warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * _progress(step, warmup, total))))


def _cosine_with_restarts(step, *, warmup, total, num_cycles=1):
    if step < warmup:
        return _warmup(step, warmup)
    p = _progress(step, warmup, total)
    if p >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * p) % 1.0))))


def _polynomial(step, *, warmup, total, lr_init, lr_end=1e-7, power=1.0):
    if step < warmup:
        return _warmup(step, warmup)
    if step > total:
        return lr_end / lr_init
    remaining = 1.0 - _progress(step, warmup, total)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def _constant(step):
    return 1.0


def _constant_with_warmup(step, *, warmup):
    return _warmup(step, warmup) if step < warmup else 1.0


def _inverse_sqrt(step, *, warmup, timescale=None):
    timescale = timescale or (warmup or 10_000)
    if step < warmup:
        return _warmup(step, warmup)
    return 1.0 / math.sqrt((step + timescale - warmup) / timescale)


def _min_rate(name: str, lr_init: float, min_lr, min_lr_rate) -> float:
    """The floor of a min-lr cosine as a fraction of the peak, from exactly one of min_lr / min_lr_rate."""
    if (min_lr is None) == (min_lr_rate is None):
        raise ValueError(
            f"lr_scheduler_type={name!r} needs exactly one of lr_scheduler_kwargs {{'min_lr': ...}} or "
            "{'min_lr_rate': ...}"
        )
    return min_lr / lr_init if min_lr is not None else min_lr_rate


def _cosine_with_min_lr(step, *, warmup, total, lr_init, num_cycles=0.5, min_lr=None, min_lr_rate=None):
    rate = _min_rate("cosine_with_min_lr", lr_init, min_lr, min_lr_rate)
    if step < warmup:
        return _warmup(step, warmup)
    factor = 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * _progress(step, warmup, total)))
    return max(0.0, factor * (1.0 - rate) + rate)


def _cosine_warmup_with_min_lr(step, *, warmup, total, lr_init, num_cycles=0.5, min_lr=None, min_lr_rate=None,
                               warmup_lr_rate=None):
    rate = _min_rate("cosine_warmup_with_min_lr", lr_init, min_lr, min_lr_rate)
    if step < warmup:
        if warmup_lr_rate is None:
            return (step + 1) / max(1, warmup)
        return warmup_lr_rate + (1.0 - warmup_lr_rate) * step / max(1, warmup - 1)
    progress = (step - warmup + 1) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * progress)) * (1.0 - rate) + rate)


_SHAPES_UP = {"linear": lambda p: p, "cosine": lambda p: 0.5 * (1.0 - math.cos(math.pi * p)),
              "1-sqrt": lambda p: 1.0 - math.sqrt(1.0 - p)}


def _warmup_stable_decay(step, *, warmup, total, num_decay_steps, num_stable_steps=None, warmup_type="linear",
                         decay_type="cosine", min_lr_ratio=0.0, num_cycles=0.5):
    shapes_down = {"linear": lambda p: 1.0 - p, "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * p)),
                   "1-sqrt": lambda p: 1.0 - math.sqrt(p)}
    if warmup_type not in _SHAPES_UP or decay_type not in shapes_down:
        raise ValueError(f"lr_scheduler_kwargs warmup_type={warmup_type!r}, decay_type={decay_type!r}: each is "
                         f"one of {sorted(_SHAPES_UP)}")
    stable = num_stable_steps if num_stable_steps is not None else max(0, total - warmup - num_decay_steps)
    if step < warmup:
        return max(0.0, _SHAPES_UP[warmup_type](step / max(1, warmup)) * (1.0 - min_lr_ratio) + min_lr_ratio)
    if step < warmup + stable:
        return 1.0
    if step < warmup + stable + num_decay_steps:
        progress = (step - warmup - stable) / max(1, num_decay_steps)
        return max(0.0, shapes_down[decay_type](progress) * (1.0 - min_lr_ratio) + min_lr_ratio)
    return min_lr_ratio


def schedule_multiplier(name: str, warmup: int, total: int, lr_init: float, **kwargs):
    """The function ``step -> lr multiplier`` for a schedule name (all but reduce_lr_on_plateau)."""
    table = {
        "linear": partial(_linear, warmup=warmup, total=total),
        "cosine": partial(_cosine, warmup=warmup, total=total),
        "cosine_with_restarts": partial(_cosine_with_restarts, warmup=warmup, total=total),
        "polynomial": partial(_polynomial, warmup=warmup, total=total, lr_init=lr_init),
        "constant": _constant,
        "constant_with_warmup": partial(_constant_with_warmup, warmup=warmup),
        "inverse_sqrt": partial(_inverse_sqrt, warmup=warmup),
        "cosine_with_min_lr": partial(_cosine_with_min_lr, warmup=warmup, total=total, lr_init=lr_init),
        "cosine_warmup_with_min_lr": partial(_cosine_warmup_with_min_lr, warmup=warmup, total=total, lr_init=lr_init),
        "warmup_stable_decay": partial(_warmup_stable_decay, warmup=warmup, total=total),
    }
    if name not in table:
        raise ValueError(f"lr_scheduler_type={name!r} is not a known schedule; choose from: {', '.join(SCHEDULER_NAMES)}")
    fn = partial(table[name], **kwargs) if kwargs else table[name]
    fn(warmup)  # fail now, not mid-run, on bad kwargs
    return fn


def get_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int = 0,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: dict | None = None,
):
    """A learning-rate scheduler by name, stepped once per optimizer step."""
    kwargs = dict(scheduler_specific_kwargs or {})
    if name == "reduce_lr_on_plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs)
    if name == "greedy":
        try:
            from transformers.optimization import GreedyLR
        except ImportError as e:
            raise ImportError("lr_scheduler_type='greedy' is transformers' GreedyLR: pip install transformers") from e
        scheduler = GreedyLR(optimizer, **kwargs)
        scheduler.steps_on_metric = True  # stepped with the evaluation metric, like ReduceLROnPlateau
        return scheduler
    if name not in ("constant", "constant_with_warmup", "inverse_sqrt") and num_training_steps is None:
        raise ValueError(f"lr_scheduler_type={name!r} needs num_training_steps")
    lr_init = optimizer.defaults["lr"]
    try:
        fn = schedule_multiplier(name, num_warmup_steps, num_training_steps or 0, lr_init, **kwargs)
    except TypeError as e:
        raise ValueError(f"lr_scheduler_kwargs={kwargs} do not fit lr_scheduler_type={name!r}: {e}") from e
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def steps_on_metric(scheduler) -> bool:
    """A scheduler stepped with the evaluation metric after each evaluation, not after each step."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) or getattr(
        scheduler, "steps_on_metric", False)


def num_warmup_steps(args, num_training_steps: int) -> int:
    """``warmup_steps`` when >= 1; a ``warmup_steps`` in (0, 1) is a ratio of the run (transformers 5), else
    ``warmup_ratio`` is: ``ceil(ratio * num_training_steps)``."""
    if args.warmup_steps >= 1:
        return int(args.warmup_steps)
    ratio = args.warmup_steps if args.warmup_steps > 0 else args.warmup_ratio
    return math.ceil(num_training_steps * ratio)
