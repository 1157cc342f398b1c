"""Optimizers of other libraries, by transformers' ``optim`` names.

Every name transformers' ``OptimizerNames`` has is accepted. A name whose library is not installed is
refused when the arguments are checked, with an ``ImportError`` naming the package to install (as transformers
does). Integrated, with the keyword arguments transformers gives them (``optim_args`` may set the others):

- ``schedule_free_*`` (schedulefree): put in train mode for the steps and in eval mode for evaluations, saves and
  the end of training, as their authors ask;
- bitsandbytes' AdamW, Lion, RMSprop and AdEMAMix, 32-bit, 8-bit and paged (bitsandbytes runs them on CPU too);
- torchao's ``adamw_torch_4bit`` / ``adamw_torch_8bit``;
- GaLore (``galore_adamw``, ``galore_adafactor``) and APOLLO (``apollo_adamw``): the weights of the linear layers
  ``optim_target_modules`` names (or ``"all-linear"``) form a group with the low-rank projection settings
  (``optim_args``: rank, update_proj_gap, scale, proj_type; APOLLO also proj and scale_type);
- ``grokadamw``, and ``stable_adamw`` (torch-optimi).

Refused with ``NotImplementedError`` even when their library is there: the layer-wise GaLore/APOLLO variants (one
optimizer per parameter stepped from gradient hooks, which bypasses accumulation, clipping and the checkpointed
optimizer state), LOMO/AdaLomo (they fuse the update into backward), ``galore_adamw_8bit`` off CUDA, and the
XLA and NPU fused AdamW, which need their hardware. ``adamw_anyprecision`` needs torchdistx, which the package
registry does not have.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

from torch import nn

# name -> (module to import, pip package)
_BNB = ("bitsandbytes", "bitsandbytes")
_BNB_NAMES = ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "lion_32bit", "lion_8bit",
              "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
              "ademamix", "ademamix_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit")
_GALORE_NAMES = ("galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
                 "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise")
EXTERNAL_OPTIMIZERS: dict[str, tuple[str, str]] = {
    "schedule_free_adamw": ("schedulefree", "schedulefree"),
    "schedule_free_radam": ("schedulefree", "schedulefree"),
    "schedule_free_sgd": ("schedulefree", "schedulefree"),
    **{name: _BNB for name in _BNB_NAMES},
    "adamw_torch_4bit": ("torchao", "torchao"),
    "adamw_torch_8bit": ("torchao", "torchao"),
    **{name: ("galore_torch", "galore-torch") for name in _GALORE_NAMES},
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
# the low-rank optimizers: name -> (module, class, the group settings with transformers' defaults)
_GALORE_GROUP = {"rank": 128, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"}
LOW_RANK: dict[str, tuple[str, str, dict]] = {
    "galore_adamw": ("galore_torch", "GaLoreAdamW", _GALORE_GROUP),
    "galore_adamw_8bit": ("galore_torch", "GaLoreAdamW8bit", _GALORE_GROUP),
    "galore_adafactor": ("galore_torch", "GaLoreAdafactor", _GALORE_GROUP),
    "apollo_adamw": ("apollo_torch", "APOLLOAdamW", {**_GALORE_GROUP, "scale": 1.0, "proj": "random",
                                                      "scale_type": "channel"}),
}
INTEGRATED = ("schedule_free_adamw", "schedule_free_radam", "schedule_free_sgd", *_BNB_NAMES, "adamw_torch_4bit",
              "adamw_torch_8bit", *LOW_RANK, "grokadamw", "stable_adamw")
_WHY_NOT = {
    "lomo": "LOMO fuses the update into the backward pass, which this Trainer's step does not do",
    "adalomo": "AdaLomo fuses the update into the backward pass, which this Trainer's step does not do",
    **{name: "the layer-wise variant steps each parameter from a gradient hook, bypassing gradient accumulation, "
             "clipping and the optimizer state saved in checkpoints; use the name without '_layerwise'"
       for name in EXTERNAL_OPTIMIZERS if name.endswith("_layerwise")},
}


# what a resume cannot restore of an optimizer's state, said when one resumes
RESUME_CAVEATS = {
    "grokadamw": "GrokAdamW keeps its moments in its parameter groups keyed by the parameter objects, which no "
                 "checkpoint (this Trainer's or transformers') can map back: the resumed run starts them afresh",
}


def check_external_optimizer(name: str, args=None) -> None:
    """Refuse an external ``optim`` whose library is missing (ImportError) or that is not integrated."""
    module, package = EXTERNAL_OPTIMIZERS[name]
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"optim={name!r} needs the {module!r} package, which is not installed: pip install {package}")
    if name not in INTEGRATED:
        why = _WHY_NOT.get(name, "it is not integrated in trainforge yet")
        raise NotImplementedError(f"optim={name!r} ({package}) is not supported: {why}. Use another optim, or pass "
                                  "your own with Trainer(optimizers=(optimizer, None))")
    if name == "galore_adamw_8bit":
        import torch

        if not torch.cuda.is_available():
            raise NotImplementedError("optim='galore_adamw_8bit' needs a CUDA GPU (galore-torch's 8-bit AdamW "
                                      "runs CUDA kernels); on CPU use optim='galore_adamw'")
    if name in LOW_RANK and args is not None and not args.optim_target_modules:
        raise ValueError(f"optim={name!r} projects the weights of the linear layers optim_target_modules names: "
                         "set optim_target_modules (module names, a regex, or 'all-linear')")


def external_optimizer_class_and_kwargs(name: str, args, extra: dict) -> tuple[type, dict]:
    """The class and keyword arguments of an integrated external optimizer; ``extra`` (the parsed ``optim_args``)
    sets or adds keyword arguments, except the low-rank group settings, which go to :func:`low_rank_groups`."""
    check_external_optimizer(name, args)
    lr = {"lr": args.learning_rate}
    betas = {"betas": (args.adam_beta1, args.adam_beta2)}
    adam = {**lr, **betas, "eps": args.adam_epsilon}
    extra = dict(extra)
    if name.startswith("schedule_free"):
        import schedulefree

        total = args.max_steps if args.max_steps > 0 else 0  # a ratio needs the run's length, known with max_steps
        common = {**lr, "warmup_steps": args.get_warmup_steps(total)}
        if name == "schedule_free_sgd":
            return schedulefree.SGDScheduleFree, {**common, **extra}
        cls = schedulefree.AdamWScheduleFree if name == "schedule_free_adamw" else schedulefree.RAdamScheduleFree
        return cls, {**common, **betas, "eps": args.adam_epsilon, **extra}
    if name in _BNB_NAMES:
        return _bitsandbytes(name, args, lr, betas, adam, extra)
    if name.startswith("adamw_torch_"):
        from torchao.optim import AdamW4bit, AdamW8bit

        return (AdamW4bit if name == "adamw_torch_4bit" else AdamW8bit), {**adam, **extra}
    if name in LOW_RANK:
        module, class_name, group = LOW_RANK[name]
        kwargs = {**(adam if name != "galore_adafactor" else {**lr, "scale_parameter": False, "relative_step": False})}
        kwargs.update({k: v for k, v in extra.items() if k not in group})
        return getattr(importlib.import_module(module), class_name), kwargs
    if name == "stable_adamw":
        from optimi import StableAdamW

        return StableAdamW, {**adam, "weight_decay": args.weight_decay, **extra}
    from grokadamw import GrokAdamW

    grok = {"alpha_init": 0.98, "lamb": 2.0, "gamma": 0.1, "grokking_signal_decay_rate": 0.1, "gradient_clipping": 1.0}
    return GrokAdamW, {**lr, **grok, **extra}


def _bitsandbytes(name: str, args, lr: dict, betas: dict, adam: dict, extra: dict) -> tuple[type, dict]:
    from bitsandbytes import optim

    bits = {"optim_bits": 8 if "8bit" in name else 32}
    paged = {"is_paged": "paged" in name}
    if "rmsprop" in name:
        return optim.RMSprop, {**lr, **bits, **extra}
    if "lion" in name:
        return optim.Lion, {**lr, **betas, **bits, **paged, **extra}
    if "ademamix" in name:
        three = (extra.pop("beta1", args.adam_beta1), extra.pop("beta2", args.adam_beta2), extra.pop("beta3", 0.9999))
        return optim.AdEMAMix, {**lr, "betas": three, "alpha": 5.0, "eps": args.adam_epsilon, **bits, **paged, **extra}
    return optim.AdamW, {**adam, **bits, **paged, **extra}


def low_rank_groups(name: str, model: nn.Module, args, groups: list[dict], extra: dict) -> list[dict]:
    """``groups`` with the weights of the targeted linear layers moved into a group of their own that carries
    the projection settings (defaults as transformers', ``optim_args`` override them). Raises ValueError when
    ``optim_target_modules`` matches no linear layer."""
    settings = {key: extra.get(key, default) for key, default in LOW_RANK[name][2].items()}
    targets = {f"{module_name}.weight" for module_name, module in model.named_modules()
               if isinstance(module, nn.Linear) and module.weight.requires_grad
               and _targeted(args.optim_target_modules, module_name)}
    if not targets:
        raise ValueError(f"optim={name!r}: optim_target_modules={args.optim_target_modules!r} matches no linear "
                         "layer of the model; name modules (e.g. ['q_proj', 'v_proj']), a regex, or 'all-linear'")
    by_id = {id(p): n for n, p in model.named_parameters()}
    projected = [p for n, p in model.named_parameters() if n in targets]
    rest = [{**g, "params": [p for p in g["params"] if by_id.get(id(p)) not in targets]} for g in groups]
    return [g for g in rest if g["params"]] + [{"params": projected, "weight_decay": args.weight_decay, **settings}]


def optimizer_state_classes(name: str) -> list[type]:
    """The classes the state of optimizer ``name`` holds besides tensors (GaLore's and APOLLO's projectors, with
    their matrices), which loading its checkpoint allows and nothing else."""
    if name not in LOW_RANK:
        return []
    if name.startswith("galore"):
        from galore_torch.galore_projector import GaLoreProjector

        return [GaLoreProjector]
    from apollo_torch.random_projector import GradientProjector
    from apollo_torch.svd_projector import GaLoreProjector as SVDProjector

    return [GradientProjector, SVDProjector]


def _targeted(targets, module_name: str) -> bool:
    """Whether ``optim_target_modules`` names the module: 'all-linear'; a regex matching the whole name; or a
    list of names, each matching as a part of the name or as a whole-name regex."""
    if isinstance(targets, str):
        return targets.replace("_", "-") == "all-linear" or re.fullmatch(targets, module_name) is not None
    return any(t in module_name or re.fullmatch(t, module_name) is not None for t in targets)


def set_optimizer_mode(optimizer, training: bool) -> None:
    """Put an optimizer that has modes (the schedule-free ones) in train or eval mode; others are left as they
    are. An engine's or accelerate's wrapper is looked through."""
    inner = getattr(optimizer, "optimizer", optimizer)
    mode = getattr(inner, "train" if training else "eval", None)
    if callable(mode) and not isinstance(inner, type):
        mode()
