"""Fully sharded data parallel with torch FSDP2 (``torch.distributed.fsdp.fully_shard``).

``fsdp="full_shard"`` (parameters, gradients and optimizer state sharded; parameters gathered
per wrapped module for forward and backward), ``"shard_grad_op"`` (parameters stay gathered
between forward and backward), plus ``"offload"`` (parameters and optimizer state on the CPU);
``"auto_wrap"`` is accepted (wrapping is always automatic, see below).
``fsdp_config`` (a dict or a JSON file) takes:

============================  ===============================================================
key                           meaning
============================  ===============================================================
transformer_layer_cls_to_wrap class names sharded as units (default: a transformers model's
                              ``_no_split_modules``; else only the root module)
min_num_params                instead: shard every module with at least this many parameters
state_dict_type               ``"full"`` (default): ``model.safetensors`` + ``optimizer.pt`` hold the
                              full states; ``"sharded"``: torch.distributed.checkpoint writes each
                              process's shards to ``fsdp_state/`` (no gather on save)
reshard_after_forward         override the choice ``full_shard``/``shard_grad_op`` makes
activation_checkpointing      recompute each sharded unit's activations in its backward (the
                              outermost units; torch's composable ``checkpoint``), where its
                              parameters are gathered already: no second all-gather, unlike the
                              model's own ``gradient_checkpointing`` (setting both is refused)
============================  ===============================================================

accelerate 1.15 only takes its FSDP path when it drives CUDA devices (with ``cpu=True`` it
silently falls back to DDP), so the model is sharded here with torch's own API on every
device, and accelerate still places the model and runs mixed precision.
"""

from __future__ import annotations

import os

import torch

from .strategy import EngineStrategy, load_json_option, parse_options

FSDP_OPTIONS = ("full_shard", "shard_grad_op", "hybrid_shard", "offload", "auto_wrap")
FSDP_CONFIG_KEYS = ("transformer_layer_cls_to_wrap", "min_num_params", "state_dict_type", "reshard_after_forward",
                    "version", "activation_checkpointing")
SHARDED_STATE_DIR = "fsdp_state"


def parse_fsdp(value) -> list[str]:
    options = parse_options("fsdp", value, FSDP_OPTIONS)
    if not options:
        return []
    if "hybrid_shard" in options:
        raise ValueError(f"fsdp={value!r}: 'hybrid_shard' (a 2-D mesh per node) is not supported; use 'full_shard'")
    modes = [o for o in options if o in ("full_shard", "shard_grad_op")]
    if len(modes) > 1:
        raise ValueError(f"fsdp={value!r}: choose one of 'full_shard' and 'shard_grad_op'")
    if not modes:
        raise ValueError(f"fsdp={value!r} names no sharding mode: add 'full_shard' (or 'shard_grad_op')")
    return options


def load_fsdp_config(value) -> dict:
    """``fsdp_config`` as a dict (from a dict, a JSON string or a JSON file), keys checked."""
    if value is None:
        return {}
    value = load_json_option("fsdp_config", value)
    config = {k[5:] if k.startswith("fsdp_") else k: v for k, v in value.items()}  # accept HF's fsdp_ prefix
    unknown = sorted(set(config) - set(FSDP_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"fsdp_config has unknown key(s) {unknown}; valid keys: {list(FSDP_CONFIG_KEYS)}")
    if config.get("version", 2) != 2:
        raise ValueError("fsdp_config version=1 (FSDP1) is not supported: FSDP2 (version 2) is the maintained one")
    if config.get("state_dict_type", "full") not in ("full", "sharded", "FULL_STATE_DICT", "SHARDED_STATE_DICT"):
        raise ValueError(f"fsdp_config state_dict_type={config['state_dict_type']!r}: use 'full' or 'sharded'")
    return config


def recompute_units(units: list[torch.nn.Module]) -> None:
    """Recompute the activations of the outermost ``units`` in backward (before they are sharded)."""
    from torch.distributed._composable import checkpoint

    if not units:
        raise ValueError("fsdp_config['activation_checkpointing'] recomputes the sharded units, and this model has none "
                         "besides the root: name them with fsdp_config['transformer_layer_cls_to_wrap'] (or "
                         "min_num_params)")
    inner = {id(m) for unit in units for m in unit.modules() if m is not unit}
    for unit in units:
        if id(unit) not in inner:
            checkpoint(unit)


class FSDPStrategy(EngineStrategy):
    name = argument = "fsdp"
    example = "fsdp='full_shard'"
    companion_arguments = ("fsdp_config",)
    collective_forward = True
    supports_grad_scaler = False
    restores_own_files = True

    @classmethod
    def validate_arguments(cls, args) -> None:
        parse_fsdp(args.fsdp)
        if load_fsdp_config(args.fsdp_config).get("activation_checkpointing") and args.gradient_checkpointing:
            raise ValueError(
                "fsdp_config['activation_checkpointing'] and gradient_checkpointing (activation_checkpointing) are "
                "both set: the model's own recompute would gather each unit's parameters a second time in backward; "
                "keep fsdp_config['activation_checkpointing'] and set gradient_checkpointing=False"
            )
        super().validate_arguments(args)

    def __init__(self, args):
        super().__init__(args)
        self.options = parse_fsdp(args.fsdp)
        self.config = load_fsdp_config(args.fsdp_config)
        self.sharded_state = str(self.config.get("state_dict_type", "full")).lower().startswith("sharded")
        self.engine_loads_weights = self.sharded_state
        self.model = None

    def bind(self, accelerator) -> None:
        super().bind(accelerator)
        self.require_process_group(f"fsdp={self.args.fsdp!r}")

    def _wrap_classes(self, model) -> set[str]:
        names = self.config.get("transformer_layer_cls_to_wrap")
        if names is None:
            names = getattr(model, "_no_split_modules", None) or []
        return {names} if isinstance(names, str) else set(names)

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """Apply ``fully_shard`` to the chosen submodules, then the root (in place; returns the model)."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard

        if isinstance(model, FSDPModule):
            return model
        acc = self.accelerator
        model = model.to(acc.device)
        device_type = acc.device.type
        mesh = init_device_mesh(device_type, (acc.num_processes,))
        reshard = self.config.get("reshard_after_forward", "shard_grad_op" not in self.options)
        kwargs = {"mesh": mesh, "reshard_after_forward": reshard}
        if "offload" in self.options:
            kwargs["offload_policy"] = CPUOffloadPolicy()
        classes = self._wrap_classes(model)
        min_params = self.config.get("min_num_params")
        targets = []
        for name, module in model.named_modules():
            if not name:
                continue
            if type(module).__name__ in classes:
                targets.append(module)
            elif min_params and not classes and sum(p.numel() for p in module.parameters()) >= int(min_params):
                targets.append(module)
        if self.config.get("activation_checkpointing"):
            recompute_units(targets)
        for module in reversed(targets):  # innermost first
            if not isinstance(module, FSDPModule):
                fully_shard(module, **kwargs)
        fully_shard(model, **kwargs)
        self.model = model
        return model

    def prepare_for_evaluation(self, model):
        return self.shard(model)

    def prepare(self, model, optimizer, make_scheduler, max_steps: int, warmup_steps: int):
        self._optimizer = optimizer  # sharded in shard(); FSDP reduces the gradients itself
        return model, optimizer, make_scheduler(optimizer)

    def no_sync(self, model):
        return _NoGradientSync(model)

    def clip_grad_norm(self, model, optimizer, parameters, max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)  # DTensor gradients: a collective norm
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    # -- checkpoints -------------------------------------------------------------------------
    def _options(self, **kw):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(**kw)

    def writes_weights_file(self, final: bool = False) -> bool:
        return final or not self.sharded_state  # sharded checkpoints: the shards go to fsdp_state/

    def model_state_dict(self, model, final: bool = False) -> dict | None:
        if not self.writes_weights_file(final):
            return None
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=self._options(full_state_dict=True, cpu_offload=True))

    def optimizer_state_dict(self, optimizer) -> dict | None:
        if self.sharded_state:
            return None
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(self.model, optimizer,
                                         options=self._options(full_state_dict=True, cpu_offload=True))
        return state if self.accelerator.process_index == 0 else None

    def save_engine_state(self, directory: str, step: int) -> None:
        if not self.sharded_state:
            return
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, self._optimizer)
        dcp.save({"model": model_state, "optimizer": optim_state},
                 checkpoint_id=os.path.join(directory, SHARDED_STATE_DIR))

    def has_engine_state(self, directory: str) -> bool:
        return os.path.isdir(os.path.join(directory, SHARDED_STATE_DIR))

    def load_engine_state(self, directory: str, model, optimizer, load_optimizer: bool = True) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_model_state_dict, set_state_dict

        path = os.path.join(directory, SHARDED_STATE_DIR)
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state} if load_optimizer else {"model": model_state}
        dcp.load(state, checkpoint_id=path)
        if load_optimizer:
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        else:
            set_model_state_dict(model, state["model"])

    def load_full_state_dict(self, model, state_dict: dict) -> bool:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, state_dict, options=self._options(full_state_dict=True))
        return True

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.model, optimizer, state, options=self._options(full_state_dict=True))


class _NoGradientSync:
    """Accumulation micro-batches before the last: FSDP2 keeps unreduced gradients."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        if hasattr(self.model, "set_requires_gradient_sync"):
            self.model.set_requires_gradient_sync(False)

    def __exit__(self, *exc):
        if hasattr(self.model, "set_requires_gradient_sync"):
            self.model.set_requires_gradient_sync(True)
        return False
