"""Checkpoint cost for a ~100M-parameter model: save and load against bare safetensors + torch.save,
and the training stall of ``save_async`` against a blocking save.

The Trainer's save writes everything a resume needs (weights, optimizer, scheduler, RNG, data
position, state) into a temporary folder, fsyncs it and renames it into place. The bare save is
``safetensors.torch.save_file(model.state_dict())`` + ``torch.save(optimizer.state_dict())``, with
no fsync. The stall is the time ``save_training_checkpoint()`` keeps the training thread: the whole
write when blocking, the copy to host memory with ``save_async=True``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch
from torch import nn


class Wide(nn.Module):
    """``layers`` linear layers of ``width`` x ``width``: 24 x 2048^2 = 100.7M parameters."""

    def __init__(self, width: int = 2048, layers: int = 24):
        super().__init__()
        self.net = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.net(x), labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, width: int, n: int = 8):
        self.x = torch.randn(n, width, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.x[i]}


def _trained_trainer(out: str, width: int, layers: int, save_async: bool):
    from trainer import PrinterCallback, Trainer, TrainingArguments

    args = TrainingArguments(output_dir=out, max_steps=1, per_device_train_batch_size=2, save_strategy="no",
                             disable_tqdm=True, report_to="none", save_async=save_async, use_cpu=True)
    trainer = Trainer(Wide(width, layers), args, train_dataset=Rows(width))
    trainer.remove_callback(PrinterCallback)
    trainer.train()  # one step: the optimizer has its state
    return trainer


def measure(repeats: int, quick: bool) -> dict:
    from safetensors.torch import load_file, save_file

    from trainer import checkpoint as ckpt

    width, layers = (256, 4) if quick else (2048, 24)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        blocking = _trained_trainer(os.path.join(tmp, "blocking"), width, layers, save_async=False)
        out["parameters"] = sum(p.numel() for p in blocking.model.parameters())
        bare_dir = os.path.join(tmp, "bare")
        os.makedirs(bare_dir)
        times = {"ours save": [], "bare save": [], "ours load": [], "bare load": [], "async stall": []}
        asynchronous = _trained_trainer(os.path.join(tmp, "async"), width, layers, save_async=True)
        for _ in range(repeats):
            start = time.perf_counter()
            path = blocking.save_training_checkpoint()
            times["ours save"].append(time.perf_counter() - start)

            start = time.perf_counter()
            save_file(blocking.model.state_dict(), os.path.join(bare_dir, "model.safetensors"))
            torch.save(blocking.optimizer.state_dict(), os.path.join(bare_dir, "optimizer.pt"))
            times["bare save"].append(time.perf_counter() - start)

            start = time.perf_counter()
            ckpt.load_model_weights(blocking.model, path)
            blocking.optimizer.load_state_dict(ckpt.safe_torch_load(os.path.join(path, "optimizer.pt"), "optimizer"))
            times["ours load"].append(time.perf_counter() - start)

            start = time.perf_counter()
            blocking.model.load_state_dict(load_file(os.path.join(bare_dir, "model.safetensors")))
            blocking.optimizer.load_state_dict(torch.load(os.path.join(bare_dir, "optimizer.pt"), weights_only=True))
            times["bare load"].append(time.perf_counter() - start)

            start = time.perf_counter()
            asynchronous.save_training_checkpoint()
            times["async stall"].append(time.perf_counter() - start)
            asynchronous.checkpoint_writer.wait()  # the next measurement starts with the disk idle
        out.update({name: statistics.median(values) for name, values in times.items()})
    return out
