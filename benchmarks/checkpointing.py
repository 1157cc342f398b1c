"""Checkpoint cost for a ~100M-parameter model: save and load against bare safetensors + torch.save and
against transformers' Trainer, and the training stall of ``save_async`` against a blocking save.

The Trainer's save writes everything a resume needs (weights, optimizer, scheduler, RNG, data
position, state) into a temporary folder, fsyncs it and renames it into place. The bare save is
``safetensors.torch.save_file(model.state_dict())`` + ``torch.save(optimizer.state_dict())``, with
no fsync. The stall is the time ``save_training_checkpoint()`` keeps the training thread: the whole
write when blocking, the copy to host memory with ``save_async=True``. transformers' save is its Trainer's
``_save_checkpoint`` (weights, optimizer, scheduler, RNG, state; no fsync), its load ``_load_from_checkpoint`` +
``_load_optimizer_and_scheduler``; ours loads the weights, the optimizer and the scheduler the same way.
"""

from __future__ import annotations

import os
import shutil
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


def _trained_trainer(out: str, width: int, layers: int, save_async: bool = False, lib: str = "trainforge"):
    if lib == "trainforge":
        from trainer import PrinterCallback, Trainer, TrainingArguments

        extra = {"save_async": save_async}
    else:
        from transformers import PrinterCallback, Trainer, TrainingArguments

        extra = {}
    args = TrainingArguments(output_dir=out, max_steps=1, per_device_train_batch_size=2, save_strategy="no",
                             disable_tqdm=True, report_to="none", use_cpu=True, **extra)
    trainer = Trainer(Wide(width, layers), args, train_dataset=Rows(width))
    trainer.remove_callback(PrinterCallback)
    trainer.train()  # one step: the optimizer has its state
    return trainer


def _timed(fn) -> float:
    os.sync()  # every measurement starts with the earlier ones' bytes on disk
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(repeats: int, quick: bool, with_hf: bool = False) -> dict:
    """Medians over rounds; in each round every save and load runs once, in alternating order, each at a new
    step (the previous round's checkpoint deleted outside the clock), so no save replaces a folder."""
    from safetensors.torch import load_file, save_file

    from trainer import checkpoint as ckpt

    width, layers = (256, 4) if quick else (2048, 24)
    out = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCHMARK_DIR")) as tmp:
        blocking = _trained_trainer(os.path.join(tmp, "blocking"), width, layers)
        asynchronous = _trained_trainer(os.path.join(tmp, "async"), width, layers, save_async=True)
        hf = _trained_trainer(os.path.join(tmp, "hf"), width, layers, lib="transformers") if with_hf else None
        out["parameters"] = sum(p.numel() for p in blocking.model.parameters())
        bare_dir = os.path.join(tmp, "bare")
        os.makedirs(bare_dir)

        def ours_save():
            blocking.state.global_step += 1
            blocking.save_training_checkpoint()

        def ours_load():
            path = ckpt.checkpoint_dir(blocking.args.output_dir, blocking.state.global_step)
            ckpt.load_model_weights(blocking.model, path)
            blocking.optimizer.load_state_dict(ckpt.safe_torch_load(os.path.join(path, "optimizer.pt"), "optimizer"))
            blocking.lr_scheduler.load_state_dict(ckpt.safe_torch_load(os.path.join(path, "scheduler.pt"),
                                                                       "scheduler"))

        def bare_save():
            save_file(blocking.model.state_dict(), os.path.join(bare_dir, "model.safetensors"))
            torch.save(blocking.optimizer.state_dict(), os.path.join(bare_dir, "optimizer.pt"))

        def bare_load():
            blocking.model.load_state_dict(load_file(os.path.join(bare_dir, "model.safetensors")))
            blocking.optimizer.load_state_dict(torch.load(os.path.join(bare_dir, "optimizer.pt"), weights_only=True))

        def async_stall():
            asynchronous.state.global_step += 1
            asynchronous.save_training_checkpoint()

        def hf_save():
            hf.state.global_step += 1
            hf._save_checkpoint(hf.model, trial=None)

        def hf_load():
            path = os.path.join(hf.args.output_dir, f"checkpoint-{hf.state.global_step}")
            hf._load_from_checkpoint(path)
            hf._load_optimizer_and_scheduler(path)

        steps = {"ours save": ours_save, "ours load": ours_load, "bare save": bare_save, "bare load": bare_load,
                 "async stall": async_stall}
        if hf is not None:
            steps.update({"hf save": hf_save, "hf load": hf_load})
        times = {name: [] for name in steps}
        for round_index in range(repeats):
            order = [("ours save", "ours load"), ("bare save", "bare load"), ("async stall",)]
            if hf is not None:
                order.append(("hf save", "hf load"))
            for group in order if round_index % 2 == 0 else order[::-1]:
                for name in group:  # a load reads the save just made
                    times[name].append(_timed(steps[name]))
            asynchronous.checkpoint_writer.wait()  # the next round starts with the disk idle
            for trainer in (blocking, asynchronous, hf):
                if trainer is not None:  # only the newest checkpoint of each stays
                    for old in ckpt.list_checkpoints(trainer.args.output_dir)[:-1]:
                        shutil.rmtree(old)
        out.update({name: statistics.median(values) for name, values in times.items()})
    return out
