"""Optimizers of other libraries, by transformers' ``optim`` names.

Every name transformers' ``OptimizerNames`` has is accepted. A name whose library is not installed is
refused when the arguments are checked, with an ``ImportError`` naming the package to install (as transformers
does). The schedule-free optimizers (``schedulefree``) are integrated: they are put in train mode for the steps
and in eval mode for evaluations, saves and the end of training, as their authors ask. The others are refused
with a ``NotImplementedError`` even when their library is there: they are not integrated yet (bitsandbytes'
8-bit and paged optimizers, torchao's low-bit AdamW, GaLore and APOLLO, LOMO, GrokAdamW, StableAdamW,
AnyPrecisionAdamW, and the XLA and NPU fused AdamW, which need their hardware).
"""

from __future__ import annotations

import importlib.util

# name -> (module to import, pip package)
_BNB = ("bitsandbytes", "bitsandbytes")
EXTERNAL_OPTIMIZERS: dict[str, tuple[str, str]] = {
    "schedule_free_adamw": ("schedulefree", "schedulefree"),
    "schedule_free_radam": ("schedulefree", "schedulefree"),
    "schedule_free_sgd": ("schedulefree", "schedulefree"),
    **{name: _BNB for name in (
        "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "lion_32bit", "lion_8bit",
        "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "ademamix",
        "ademamix_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit")},
    "adamw_torch_4bit": ("torchao", "torchao"),
    "adamw_torch_8bit": ("torchao", "torchao"),
    **{name: ("galore_torch", "galore-torch") for name in (
        "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
        "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise")},
    "apollo_adamw": ("apollo_torch", "apollo-torch"),
    "apollo_adamw_layerwise": ("apollo_torch", "apollo-torch"),
    "lomo": ("lomo_optim", "lomo-optim"),
    "adalomo": ("lomo_optim", "lomo-optim"),
    "grokadamw": ("grokadamw", "grokadamw"),
    "stable_adamw": ("optimi", "torch-optimi"),
    "adamw_anyprecision": ("torchdistx", "torchdistx"),
    "adamw_torch_xla": ("torch_xla", "torch_xla (on a TPU host)"),
    "adamw_torch_npu_fused": ("torch_npu", "torch_npu (on an Ascend NPU host)"),
}
INTEGRATED = ("schedule_free_adamw", "schedule_free_radam", "schedule_free_sgd")


def check_external_optimizer(name: str) -> None:
    """Refuse an external ``optim`` whose library is missing (ImportError) or that is not integrated."""
    module, package = EXTERNAL_OPTIMIZERS[name]
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"optim={name!r} needs the {module!r} package, which is not installed: pip install {package}")
    if name not in INTEGRATED:
        raise NotImplementedError(f"optim={name!r} ({package}) is not integrated in trainforge yet: use one of "
                                  f"its built-in optimizers, or pass your own with Trainer(optimizers=(optimizer, "
                                  "None))")


def external_optimizer_class_and_kwargs(name: str, args) -> tuple[type, dict]:
    """The class and keyword arguments of an integrated external optimizer."""
    check_external_optimizer(name)
    import schedulefree

    common = {"lr": args.learning_rate, "warmup_steps": args.warmup_steps}
    if name == "schedule_free_sgd":
        return schedulefree.SGDScheduleFree, common
    adam = {**common, "betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
    return (schedulefree.AdamWScheduleFree if name == "schedule_free_adamw" else schedulefree.RAdamScheduleFree), adam


def set_optimizer_mode(optimizer, training: bool) -> None:
    """Put an optimizer that has modes (the schedule-free ones) in train or eval mode; others are left as they
    are. An engine's or accelerate's wrapper is looked through."""
    inner = getattr(optimizer, "optimizer", optimizer)
    mode = getattr(inner, "train" if training else "eval", None)
    if callable(mode) and not isinstance(inner, type):
        mode()
