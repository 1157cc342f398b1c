"""Liger's Triton kernels (``use_liger_kernel``, ``liger_kernel_config``), patched into a transformers model.

They run on CUDA GPUs only: without one (or with ``use_cpu=True``) the Trainer refuses the flag when it is built,
rather than at the first forward. At ``train()`` (after a ``model_init``) the kernels replace the supported modules
of the model (of a PEFT model's base), as transformers does; ``liger_kernel_config`` is passed to liger's
``_apply_liger_kernel_to_instance`` (e.g. ``{"rope": True, "fused_linear_cross_entropy": True}``). A model that is not
a transformers ``PreTrainedModel`` is left unpatched with a warning.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from .loss import inner_model

logger = logging.getLogger(__name__)


def check_liger_kernel(args) -> None:
    """Raise, naming the fix, when the kernels cannot run here."""
    if not args.use_liger_kernel:
        return
    if args.use_cpu or not torch.cuda.is_available():
        where = "use_cpu=True runs on the CPU" if args.use_cpu else "this machine has no CUDA GPU"
        raise ValueError(f"use_liger_kernel=True needs a CUDA GPU (Liger's kernels are Triton GPU kernels), and "
                         f"{where}; unset use_liger_kernel to train with the model's own modules")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ImportError("use_liger_kernel=True needs the liger-kernel package: pip install liger-kernel")


def apply_liger_kernel(model, config: dict | None) -> None:
    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    from transformers import PreTrainedModel

    base = inner_model(model)
    if not isinstance(base, PreTrainedModel):
        logger.warning("use_liger_kernel=True: %s is not a transformers PreTrainedModel, so no Liger kernel is "
                       "applied", type(base).__name__)
        return
    _apply_liger_kernel_to_instance(model=base, **(config or {}))
