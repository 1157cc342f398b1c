"""NEFTune (``neftune_noise_alpha``): uniform noise on the input embeddings while training, as in "NEFTune: Noisy
Embeddings Improve Instruction Finetuning" and transformers' Trainer. The noise has magnitude
``alpha / sqrt(sequence length x hidden size)``; it is drawn from torch's generator, which the loop seeds per
micro-batch, so a resumed run draws the same noise. Only a module in training mode gets noise (evaluation sees
clean embeddings), and the hook is removed when ``train()`` ends: the model saved or returned is clean.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .loss import inner_model


def _noisy_embeddings(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    if not module.training:
        return output
    magnitude = module.neftune_noise_alpha / math.sqrt(output.size(1) * output.size(2))
    return output + torch.empty_like(output).uniform_(-magnitude, magnitude)


def input_embeddings(model: nn.Module) -> nn.Module:
    """The input embedding module of a transformers model (through DDP's and PEFT's wrappers)."""
    inner = inner_model(model)
    if not hasattr(inner, "get_input_embeddings"):
        raise ValueError(f"neftune_noise_alpha needs the model's input embeddings, but {type(inner).__name__} has no "
                         "get_input_embeddings(): use a transformers model, or unset neftune_noise_alpha")
    return inner.get_input_embeddings()


def activate(model: nn.Module, alpha: float):
    """Add the noise hook to the model's input embeddings; returns what :func:`deactivate` takes."""
    embeddings = input_embeddings(model)
    embeddings.neftune_noise_alpha = alpha
    return embeddings, embeddings.register_forward_hook(_noisy_embeddings)


def deactivate(handle) -> None:
    embeddings, hook = handle
    hook.remove()
    del embeddings.neftune_noise_alpha
