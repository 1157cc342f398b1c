"""``label_smoothing_factor``: the loss the Trainer computes instead of the model's when labels are smoothed."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .prediction_store import PAD_INDEX


class LabelSmoother:
    """Cross-entropy with label smoothing ``epsilon``, ignoring positions labelled -100."""

    def __init__(self, epsilon: float, ignore_index: int = PAD_INDEX):
        self.epsilon = epsilon
        self.ignore_index = ignore_index

    def __call__(self, model_output, labels: torch.Tensor, shift_labels: bool = False) -> torch.Tensor:
        logits = model_output["logits"] if isinstance(model_output, Mapping) else model_output[0]
        if shift_labels:
            logits = logits[..., :-1, :].contiguous()
            labels = labels[..., 1:].contiguous()
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=self.ignore_index,
            label_smoothing=self.epsilon,
        )
