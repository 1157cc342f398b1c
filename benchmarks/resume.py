"""Resume cost: time from ``train(resume_from_checkpoint=...)`` to the first new step.

A 20,000-batch map-style dataset; checkpoints at step k = 10 and k = 10,000 of one run. Our
resume restores the StatefulDataLoader position directly, so its cost should not depend on k.
For comparison, the replay approach (what a resume without a data position does: draw and
drop k batches from a fresh dataloader) is timed on the same data.

    python benchmarks/resume.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import PrinterCallback, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

BATCH, BATCHES = 4, 20_000
POINTS = (10, 10_000)


class Dataset(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(BATCH * BATCHES, 16, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        return {"x": x, "labels": x.sum()}


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.net(x).squeeze(-1), labels)}


class SaveAt(TrainerCallback):
    def __init__(self, points=POINTS):
        self.points = points

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.points:
            control.should_save = True


class Stop(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = True


class FirstStep(TrainerCallback):
    """Records when the first step of a (resumed) run begins."""

    def __init__(self):
        self.at = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.at is None:
            self.at = time.perf_counter()


def arguments(out: str, max_steps: int) -> TrainingArguments:
    return TrainingArguments(output_dir=out, max_steps=max_steps, per_device_train_batch_size=BATCH,
                             save_strategy="no", logging_strategy="no", disable_tqdm=True, report_to="none",
                             log_level="error")


def quiet(trainer: Trainer) -> Trainer:
    trainer.remove_callback(PrinterCallback)
    return trainer


def resume_seconds(out: str, k: int, dataset, max_steps: int = max(POINTS) + 1) -> float:
    first = FirstStep()
    trainer = quiet(Trainer(MLP(), arguments(out, max_steps), train_dataset=dataset, callbacks=[first, Stop()]))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=os.path.join(out, f"checkpoint-{k}"))
    return first.at - start


def replay_seconds(k: int, dataset) -> float:
    trainer = Trainer(MLP(), arguments(tempfile.mkdtemp(), k + 1), train_dataset=dataset)
    start = time.perf_counter()
    iterator = iter(trainer.get_train_dataloader())
    for _ in range(k):
        next(iterator)
    return time.perf_counter() - start


def measure(repeats: int, points: tuple[int, int] = POINTS) -> tuple[dict, dict]:
    """Median seconds to the first resumed step at each k, ours and replaying k batches."""
    dataset = Dataset()
    with tempfile.TemporaryDirectory() as out:
        saver = SaveAt(points)
        steps = max(points) + 1  # a checkpoint at the run's last step ends the run: a resume would take no step
        quiet(Trainer(MLP(), arguments(out, steps), train_dataset=dataset, callbacks=[saver])).train()
        ours = {k: statistics.median(resume_seconds(out, k, dataset, steps) for _ in range(repeats))
                for k in points}
    replay = {k: statistics.median(replay_seconds(k, dataset) for _ in range(repeats)) for k in points}
    return ours, replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    print(f"training {max(POINTS)} steps to write checkpoints at k = {POINTS} ...", flush=True)
    ours, replay = measure(opts.repeats)
    small, large = POINTS
    for k in POINTS:
        print(f"k = {k:>6}: resume to first step {ours[k] * 1000:8.1f} ms   |   replaying k batches "
              f"{replay[k] * 1000:8.1f} ms")
    print(f"resume cost ratio k={large}/k={small}: ours {ours[large] / ours[small]:.2f}, "
          f"replay {replay[large] / replay[small]:.1f}")


if __name__ == "__main__":
    main()
