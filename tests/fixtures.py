"""Tiny models and data with known answers, so tests can assert exact equality.

RegressionModel learns y = a*x + b on RegressionDataset; a training run takes milliseconds.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from callbacks import EVENTS
from trainer import TrainerCallback


class RegressionDataset(torch.utils.data.Dataset):
    """``length`` samples of y = a*x + b + noise, as {"input_x", "labels"} float32 dicts."""

    def __init__(self, length: int = 64, a: float = 2.0, b: float = 3.0, seed: int = 42, label_names=("labels",)):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(length,)).astype(np.float32)
        self.labels = [(a * self.x + b + rng.normal(scale=0.1, size=(length,))).astype(np.float32)
                       for _ in label_names]
        self.label_names = label_names

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        sample = {name: y[i] for name, y in zip(self.label_names, self.labels)}
        sample["input_x"] = self.x[i]
        return sample


class RegressionModel(nn.Module):
    """y = a*x + b; returns (loss, y) with labels, (y,) without. ``double_output`` adds y twice."""

    def __init__(self, a: float = 0.0, b: float = 0.0, double_output: bool = False):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))
        self.double_output = double_output

    def forward(self, input_x, labels=None):
        y = input_x * self.a + self.b
        if labels is None:
            return (y, y) if self.double_output else (y,)
        loss = nn.functional.mse_loss(y, labels)
        return (loss, y, y) if self.double_output else (loss, y)


class RegressionDropoutModel(nn.Module):
    """A small MLP with dropout (so RNG matters) returning a dict like transformers models."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, input_x, labels=None):
        y = self.net(input_x.unsqueeze(-1)).squeeze(-1)
        out = {"logits": y}
        if labels is not None:
            out["loss"] = nn.functional.mse_loss(y, labels)
        return out


class SampleIterableDataset(torch.utils.data.IterableDataset):
    """The RegressionDataset as a stream of finite length."""

    def __init__(self, length: int = 64, seed: int = 42):
        self.base = RegressionDataset(length, seed=seed)

    def __iter__(self):
        for i in range(len(self.base)):
            yield self.base[i]


class EventRecorder(TrainerCallback):
    """Records the name of every event it receives, in order (one method per event)."""

    def __init__(self):
        self.events: list[str] = []


def _recorder(event: str):
    def record(self, args, state, control, **kwargs):
        self.events.append(event)

    return record


for _event in EVENTS:
    setattr(EventRecorder, _event, _recorder(_event))


def regression_args(tmp_path, **overrides):
    """TrainingArguments for the regression fixtures: quiet, no checkpoints unless asked."""
    from trainer import TrainingArguments

    values = {
        "output_dir": str(tmp_path / "out"),
        "learning_rate": 0.1,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "num_train_epochs": 2,
        "save_strategy": "no",
        "logging_steps": 4,
        "disable_tqdm": True,
        "report_to": "none",
    }
    values.update(overrides)
    return TrainingArguments(**values)


TRAINER_PARAMETERS = ("train_dataset", "eval_dataset", "callbacks", "compute_metrics", "model_init", "optimizers",
                      "data_collator", "preprocess_logits_for_metrics", "processing_class")


def regression_trainer(tmp_path, model: nn.Module | None = None, **kwargs):
    """The usual small setup: a ``Trainer`` of ``RegressionModel()`` on ``RegressionDataset()`` with
    ``regression_args(tmp_path)``. Keyword arguments that are Trainer parameters (``TRAINER_PARAMETERS``) go to
    the Trainer, the others to the arguments."""
    from trainer import Trainer

    trainer_kwargs = {name: kwargs.pop(name) for name in TRAINER_PARAMETERS if name in kwargs}
    trainer_kwargs.setdefault("train_dataset", RegressionDataset())
    if model is None and "model_init" not in trainer_kwargs:
        model = RegressionModel()
    return Trainer(model, regression_args(tmp_path, **kwargs), **trainer_kwargs)


def train_regression(tmp_path, model: nn.Module | None = None, **kwargs):
    """``regression_trainer(...)``, trained; returns the trainer."""
    trainer = regression_trainer(tmp_path, model, **kwargs)
    trainer.train()
    return trainer


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def saved_weights(directory) -> dict[str, torch.Tensor]:
    """The ``model.safetensors`` of a checkpoint or output directory (a PEFT model's ``adapter_model.safetensors``),
    as a state dict."""
    from safetensors.torch import load_file

    adapter = os.path.join(directory, "adapter_model.safetensors")
    return load_file(adapter if os.path.exists(adapter) else os.path.join(directory, "model.safetensors"))


def assert_same_weights(a, b, atol: float = 0.0) -> None:
    """The weights saved in directories ``a`` and ``b`` have the same keys and are bit-equal (or, with
    ``atol``, equal within it)."""
    wa, wb = saved_weights(a), saved_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        if atol:
            torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=0)
        else:
            assert torch.equal(wa[key], wb[key]), key
