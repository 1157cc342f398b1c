"""``label_smoothing_factor``: the loss the Trainer computes instead of the model's when labels are smoothed."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch

from .prediction_store import PAD_INDEX


class LabelSmoother:
    """Cross-entropy with label smoothing ``epsilon``, ignoring positions labelled -100."""

    def __init__(self, epsilon: float, ignore_index: int = PAD_INDEX):
        self.epsilon = epsilon
        self.ignore_index = ignore_index

    def __call__(self, model_output, labels: torch.Tensor, shift_labels: bool = False,
                 num_items_in_batch=None) -> torch.Tensor:
        """The smoothed loss: the mean over the batch's label tokens, or with ``num_items_in_batch`` (the optimizer
        step's token count) their sum over it."""
        logits = model_output["logits"] if isinstance(model_output, Mapping) else model_output[0]
        if shift_labels:
            logits = logits[..., :-1, :].contiguous()
            labels = labels[..., 1:].contiguous()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=self.ignore_index,
            label_smoothing=self.epsilon,
            reduction="mean" if num_items_in_batch is None else "sum",
        )
        return loss if num_items_in_batch is None else loss / num_items_in_batch


def label_smoother_for(args, model) -> LabelSmoother | None:
    """The Trainer's label smoother: None without ``label_smoothing_factor``, and (with a warning) for a
    multi-label classifier, whose multi-hot labels smoothing does not apply to."""
    factor = args.label_smoothing_factor
    if not factor:
        return None
    if getattr(getattr(model, "config", None), "problem_type", None) == "multi_label_classification":
        warnings.warn(f"label_smoothing_factor={factor} is not applied: the model is a multi-label classifier "
                      "(config.problem_type='multi_label_classification') and trains with its own loss; "
                      "set label_smoothing_factor=0 to silence this", UserWarning, stacklevel=3)
        return None
    return LabelSmoother(factor)
