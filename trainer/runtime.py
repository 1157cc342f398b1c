"""Device, precision and process setup, through accelerate.

accelerate is the one device/precision/distribution layer; this module creates the
``Accelerator`` from the arguments and the engine's strategy (``integrations/parallel.py``), and
binds once the functions the hot path calls (backward, no_sync, clipping: the strategy's own), so
that a step pays for no per-step branching. It names no engine.

Two gaps of accelerate are filled here:
- On a machine without a GPU, accelerate sees a single process under ``torchrun`` unless it
  is created with ``cpu=True``; we pass ``cpu=True`` whenever CUDA is unavailable.
- With ``mixed_precision="fp16"`` on the CPU, accelerate turns autocast off silently. Torch
  supports float16 autocast and a GradScaler on the CPU, so we switch both on.
"""

from __future__ import annotations

import logging
import random
import sys
import warnings

import numpy as np
import torch

from trainer.teardown import own_process_group

logger = logging.getLogger(__name__)


LOGGERS = ("trainer", "callbacks", "integrations", "transformers")


def _import_accelerate() -> None:
    """accelerate imports ``tqdm.auto``, which in a Jupyter kernel without ipywidgets warns ("TqdmWarning:
    IProgress not found") although nothing of ours draws a tqdm widget: the notebook display is HTML
    (``NotebookProgressCallback``). The first import is made with that warning silenced."""
    if "accelerate" in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import accelerate  # noqa: F401


def _ddp_handlers(args, backend: str | None = None) -> list:
    """accelerate kwargs handlers for the process group and DistributedDataParallel options."""
    from datetime import timedelta

    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    ddp = {}
    if args.ddp_find_unused_parameters is not None:
        ddp["find_unused_parameters"] = args.ddp_find_unused_parameters
    if args.ddp_bucket_cap_mb is not None:
        ddp["bucket_cap_mb"] = args.ddp_bucket_cap_mb
    if args.ddp_broadcast_buffers is not None:
        ddp["broadcast_buffers"] = args.ddp_broadcast_buffers
    if args.ddp_static_graph is not None:
        ddp["static_graph"] = args.ddp_static_graph
    group = {"timeout": timedelta(seconds=args.ddp_timeout)}
    if args.ddp_backend is not None or backend is not None:
        group["backend"] = args.ddp_backend or backend
    return [DistributedDataParallelKwargs(**ddp), InitProcessGroupKwargs(**group)]


def configure_logging(args, runtime) -> None:
    """Set this package's loggers (and transformers') to ``log_level`` on the main process (each
    node's main with ``log_on_each_node``) and ``log_level_replica`` on the others; 'passive'
    leaves them as they are."""
    is_main = runtime.is_local_main_process if args.log_on_each_node else runtime.is_main_process
    level = args.log_level if is_main else args.log_level_replica
    if level == "passive":
        return
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python's ``random``, numpy and torch (every CUDA device too); ``deterministic``
    (``full_determinism``) also makes torch use deterministic algorithms only."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        enable_full_determinism()


def enable_full_determinism() -> None:
    """Deterministic algorithms only (an op without one raises), cuDNN benchmarking off, cuBLAS workspace
    pinned. Dataloader workers are seeded from the epoch and their id in every run (trainer.data)."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS at its first call
    os.environ.setdefault("CUDA_LAUNCH_BLOCKING", "1")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


class Runtime:
    """The Accelerator and the per-step functions derived from the arguments."""

    def __init__(self, args):
        _import_accelerate()
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        from integrations.parallel import selected_strategy

        self.strategy = selected_strategy(args)
        cuda = torch.cuda.is_available() and not args.use_cpu
        kwargs = self.strategy.accelerator_kwargs(cuda)
        backend = kwargs.pop("backend", None)
        group_existed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if AcceleratorState._shared_state and (
            AcceleratorState().mixed_precision != args.mixed_precision or any(k.endswith("_plugin") for k in kwargs)
            or AcceleratorState().distributed_type.value not in ("NO", "MULTI_CPU", "MULTI_GPU")
        ):
            # A new Trainer in the same process with another precision, or an engine plugged into accelerate
            # now or before: start accelerate's state anew.
            AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(mixed_precision=args.mixed_precision,
                                       kwargs_handlers=_ddp_handlers(args, backend), **kwargs)
        acc = self.accelerator
        if args.fp16 and acc.device.type == "cpu" and acc.scaler is None and not self.strategy.own_mixed_precision:
            acc.native_amp = True
            acc.scaler = torch.amp.GradScaler("cpu")
        self.strategy.bind(acc)
        if args.tf32 is not None and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
            torch.backends.cudnn.allow_tf32 = args.tf32
        self.device = acc.device
        self.num_processes = acc.num_processes
        self.process_index = acc.process_index
        self.local_process_index = acc.local_process_index
        self.is_main_process = acc.is_main_process
        self.is_local_main_process = acc.is_local_main_process
        self.distributed = acc.num_processes > 1
        if self.distributed and not group_existed:  # we (through accelerate) created it: we tear it down
            own_process_group()
        self.scaler = acc.scaler
        # The per-step functions are the strategy's own, bound once: no branching per step.
        self.backward = self.strategy.backward
        self.no_sync = self.strategy.no_sync
        self.unwrap = self.strategy.unwrap

    # -- preparation ----------------------------------------------------------------------
    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Place and wrap the model for evaluation outside training (once per model)."""
        if "_original_forward" in vars(model):  # wrapped by an earlier train(): unwrap first
            model = self.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        return self.strategy.prepare_for_evaluation(model)

    def prepare_training(self, model, optimizer, make_scheduler, max_steps: int, warmup_steps: int):
        """Wrap model and optimizer for training; returns ``(model, optimizer, scheduler)``."""
        if "_original_forward" in vars(model):
            model = self.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        return self.strategy.prepare(model, optimizer, make_scheduler, max_steps, warmup_steps)

    # -- per-step functions ---------------------------------------------------------------
    def clip_grad_norm(self, parameters, max_norm: float, model=None, optimizer=None) -> torch.Tensor:
        """Unscale (fp16) and clip; returns the total norm as a tensor (no device sync)."""
        return self.strategy.clip_grad_norm(model, optimizer, parameters, max_norm)

    def autocast(self):
        return self.accelerator.autocast()

    # -- collectives ----------------------------------------------------------------------
    def gather(self, tensor):
        return self.accelerator.gather(tensor) if self.distributed else tensor

    def pad_across_processes(self, tensor, dim: int = 1, pad_index: int = -100):
        if not self.distributed:
            return tensor
        return self.accelerator.pad_across_processes(tensor, dim=dim, pad_index=pad_index)

    def wait_for_everyone(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    def reduce_sum(self, value) -> int:
        """The sum over processes of ``value`` (an int or a device tensor); one collective when distributed."""
        if not self.distributed:
            return int(value)
        t = value.detach().reshape(1).to(self.device, torch.float64) if isinstance(value, torch.Tensor) else (
            torch.tensor([float(value)], dtype=torch.float64, device=self.device))
        return int(self.accelerator.reduce(t, reduction="sum").item())

    def reduce_any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on at least one."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)
