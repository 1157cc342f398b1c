"""FairScale sharded DDP: ``sharded_ddp="simple"`` (OSS optimizer + ShardedDataParallel).

FairScale is archived upstream (no release since 0.4.13, December 2022); it is kept for
scripts that use it. New work should use ``fsdp="full_shard"`` (torch FSDP2), its maintained
successor, or DeepSpeed ZeRO.

- ``simple``: each process keeps the optimizer state of its share of the parameters (OSS) and
  gradients are reduced to the process that owns them (ShardedDataParallel). Works on CPU
  (gloo) and GPU. Checkpoints hold the full optimizer state: it is consolidated on the main
  process before ``optimizer.pt`` is written, and each process takes its share back on resume.
- ``zero_dp_2``, ``zero_dp_3``, ``offload``: FairScale's FullyShardedDataParallel, which needs
  CUDA; ``TrainingArguments`` rejects them on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util

import torch

from .parallel import ParallelStrategy

SHARDED_DDP_OPTIONS = ("simple", "zero_dp_2", "zero_dp_3", "offload", "auto_wrap")
FULLY_SHARDED = ("zero_dp_2", "zero_dp_3", "offload")


def parse_sharded_ddp(value) -> list[str]:
    """``"simple"``, ``"zero_dp_2 offload"`` or a list -> option list; unknown options are errors."""
    if not value:
        return []
    options = value.split() if isinstance(value, str) else list(value)
    unknown = [o for o in options if o not in SHARDED_DDP_OPTIONS]
    if unknown:
        raise ValueError(f"sharded_ddp={value!r}: unknown option(s) {unknown}; choose from {list(SHARDED_DDP_OPTIONS)}")
    if "simple" in options and any(o in FULLY_SHARDED for o in options):
        raise ValueError(f"sharded_ddp={value!r}: 'simple' cannot be combined with {list(FULLY_SHARDED)}")
    if "zero_dp_2" in options and "zero_dp_3" in options:
        raise ValueError(f"sharded_ddp={value!r}: choose one of 'zero_dp_2' and 'zero_dp_3'")
    return options


class ShardedDDPStrategy(ParallelStrategy):
    name = "sharded_ddp"

    def __init__(self, args):
        super().__init__(args)
        if importlib.util.find_spec("fairscale") is None:
            raise ImportError("TrainingArguments(sharded_ddp=...) needs FairScale: pip install 'trainforge[fairscale]'")
        self.options = parse_sharded_ddp(args.sharded_ddp)
        if any(o in FULLY_SHARDED for o in self.options):
            raise NotImplementedError(  # TrainingArguments rejects these first on CPU; see test_gpu.py
                f"sharded_ddp={args.sharded_ddp!r} (FairScale FullyShardedDataParallel) is not supported: FairScale is "
                "archived; use fsdp='full_shard' (torch FSDP2) instead"
            )

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
