"""FairScale sharded DDP: ``sharded_ddp="simple"`` (OSS optimizer + ShardedDataParallel).

FairScale is archived upstream (no release since 0.4.13, December 2022); it is kept for
scripts that use it. New work should use ``fsdp="full_shard"`` (torch FSDP2), its maintained
successor, or DeepSpeed ZeRO.

- ``simple``: each process keeps the optimizer state of its share of the parameters (OSS) and
  gradients are reduced to the process that owns them (ShardedDataParallel). Works on CPU
  (gloo) and GPU. Checkpoints hold the full optimizer state: it is consolidated on the main
  process before ``optimizer.pt`` is written, and each process takes its share back on resume.
- ``zero_dp_2``, ``zero_dp_3`` (with ``offload``, ``auto_wrap``): FairScale's
  FullyShardedDataParallel, which needs CUDA; ``TrainingArguments`` rejects them on a machine
  without a GPU. Checkpoints hold the full weights and the full optimizer state (gathered on the
  main process); on resume each process takes its shard. This path only runs on GPUs and has
  not been run by the project's CI (tests/test_gpu.py covers it where a GPU is present).
"""

from __future__ import annotations

import contextlib
import importlib.util

import torch

from .strategy import EngineStrategy, parse_options

SHARDED_DDP_OPTIONS = ("simple", "zero_dp_2", "zero_dp_3", "offload", "auto_wrap")
FULLY_SHARDED = ("zero_dp_2", "zero_dp_3", "offload")


def parse_sharded_ddp(value) -> list[str]:
    """``"simple"``, ``"zero_dp_2 offload"`` or a list -> option list; unknown options are errors."""
    options = parse_options("sharded_ddp", value, SHARDED_DDP_OPTIONS)
    if "simple" in options and any(o in FULLY_SHARDED for o in options):
        raise ValueError(f"sharded_ddp={value!r}: 'simple' cannot be combined with {list(FULLY_SHARDED)}")
    if "zero_dp_2" in options and "zero_dp_3" in options:
        raise ValueError(f"sharded_ddp={value!r}: choose one of 'zero_dp_2' and 'zero_dp_3'")
    return options


class ShardedDDPStrategy(EngineStrategy):
    name = argument = "sharded_ddp"
    example = "sharded_ddp='simple'"
    supports_grad_scaler = False

    @classmethod
    def validate_arguments(cls, args) -> None:
        options = parse_sharded_ddp(args.sharded_ddp)
        if any(o in FULLY_SHARDED for o in options) and (args.use_cpu or not torch.cuda.is_available()):
            raise ValueError(
                f"sharded_ddp={args.sharded_ddp!r} is FairScale's FullyShardedDataParallel, which needs CUDA GPUs. "
                "On the CPU use sharded_ddp='simple' (OSS + ShardedDataParallel) or fsdp='full_shard' (torch "
                "FSDP2, the maintained successor of FairScale)"
            )
        super().validate_arguments(args)

    @classmethod
    def for_arguments(cls, args) -> ShardedDDPStrategy:
        fully = any(o in FULLY_SHARDED for o in parse_sharded_ddp(args.sharded_ddp))
        return FairScaleFSDPStrategy(args) if fully else cls(args)

    def __init__(self, args):
        super().__init__(args)
        if importlib.util.find_spec("fairscale") is None:
            raise ImportError("TrainingArguments(sharded_ddp=...) needs FairScale: pip install 'trainforge[fairscale]'")
        self.options = parse_sharded_ddp(args.sharded_ddp)

    def bind(self, accelerator) -> None:
        super().bind(accelerator)
        self.require_process_group(f"sharded_ddp={self.args.sharded_ddp!r}")

    def wrap_optimizer(self, optimizer):
        """Rebuild ``optimizer`` as an OSS over the same parameter groups and hyperparameters."""
        from fairscale.optim import OSS

        if isinstance(optimizer, OSS):
            return optimizer
        import inspect

        accepted = inspect.signature(type(optimizer).__init__).parameters
        defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted}
        groups = [{k: v for k, v in g.items() if k != "initial_lr"} for g in optimizer.param_groups]
        return OSS(groups, optim=type(optimizer), **defaults)

    def prepare_for_evaluation(self, model):
        return model.to(self.accelerator.device)  # the full model on each process

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        model = super().unwrap(model)
        while type(model).__name__ == "ShardedDataParallel":  # FairScale's wrapper, unknown to accelerate
            model = model.module
        return model

    def prepare(self, model, optimizer, make_scheduler, max_steps: int, warmup_steps: int):
        from fairscale.nn.data_parallel import ShardedDataParallel

        model = model.to(self.accelerator.device)
        wrapped = ShardedDataParallel(model, optimizer, reduce_buffer_size=0) if self.accelerator.num_processes > 1 else model
        return wrapped, optimizer, make_scheduler(optimizer)

    def no_sync(self, model):
        return model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()

    def model_state_dict(self, model, final: bool = False) -> dict | None:
        return getattr(model, "module", model).state_dict()  # parameters may be views of OSS's flat buffers

    def clip_grad_norm(self, model, optimizer, parameters, max_norm: float) -> torch.Tensor:
        return optimizer.clip_grad_norm(max_norm)  # collective: each process holds a share of the gradients

    def optimizer_state_dict(self, optimizer) -> dict | None:
        optimizer.consolidate_state_dict(recipient_rank=0)  # collective
        if self.accelerator.process_index != 0:
            return None
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)  # OSS keeps this process's share


class FairScaleFSDPStrategy(ShardedDDPStrategy):
    """``sharded_ddp="zero_dp_2" | "zero_dp_3"`` (+ ``offload``, ``auto_wrap``): FairScale's FSDP (CUDA)."""

    name = "fairscale_fsdp"
    collective_forward = True

    def prepare_for_evaluation(self, model):
        return self.shard(model)

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        from fairscale.nn.data_parallel import FullyShardedDataParallel
        from fairscale.nn.wrap import auto_wrap, default_auto_wrap_policy, enable_wrap

        if isinstance(model, FullyShardedDataParallel):
            return model
        kwargs = {"reshard_after_forward": "zero_dp_3" in self.options, "cpu_offload": "offload" in self.options}
        model = model if "offload" in self.options else model.to(self.accelerator.device)
        if "auto_wrap" in self.options:
            with enable_wrap(wrapper_cls=FullyShardedDataParallel, auto_wrap_policy=default_auto_wrap_policy, **kwargs):
                model = auto_wrap(model)
        self.model = FullyShardedDataParallel(model, **kwargs)
        return self.model

    def wrap_optimizer(self, optimizer):
        return optimizer  # built over the FSDP flat parameters, each process's shard

    def prepare(self, model, optimizer, make_scheduler, max_steps: int, warmup_steps: int):
        return model, optimizer, make_scheduler(optimizer)

    def clip_grad_norm(self, model, optimizer, parameters, max_norm: float) -> torch.Tensor:
        return model.clip_grad_norm_(max_norm)

    def model_state_dict(self, model, final: bool = False) -> dict | None:
        return model.state_dict()  # collective: the full, unflattened weights

    def optimizer_state_dict(self, optimizer) -> dict | None:
        return self.model.gather_full_optim_state_dict(optimizer)  # collective; None but on rank 0

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        optimizer.load_state_dict(self.model.get_shard_from_optim_state_dict(state))

    def load_full_state_dict(self, model, state_dict: dict) -> bool:
        model.load_state_dict(state_dict)
        return True
