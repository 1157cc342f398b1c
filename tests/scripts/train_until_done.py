"""Training process driven by the crash and preemption tests.

Trains a ~0.26M-parameter MLP with dropout, resuming with resume_from_checkpoint="auto", prints
``START <step>`` when training begins and ``STEP <n>`` after each step, saves the final model to
``--final`` and prints ``DONE``. Deterministic: one thread, fixed seeds.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from tests.fixtures import RegressionDataset  # noqa: E402
from trainer import Trainer, TrainerCallback, TrainingArguments  # noqa: E402


class WideRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 512), nn.Tanh(), nn.Dropout(0.1), nn.Linear(512, 512), nn.Tanh(),
                                 nn.Linear(512, 1))

    def forward(self, input_x, labels=None):
        y = self.net(input_x.unsqueeze(-1)).squeeze(-1)
        return {"loss": nn.functional.mse_loss(y, labels), "logits": y}


class Report(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        print(f"START {state.global_step}", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        print(f"STEP {state.global_step}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--final", required=True)
    parser.add_argument("--max_steps", type=int, default=200)
    parser.add_argument("--save_steps", type=int, default=1, help="0: no periodic checkpoints")
    parser.add_argument("--save_total_limit", type=int, default=2)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    args = TrainingArguments(
        output_dir=opts.output_dir, max_steps=opts.max_steps, per_device_train_batch_size=16, learning_rate=1e-3,
        save_strategy="steps" if opts.save_steps else "no", save_steps=max(opts.save_steps, 1),
        save_total_limit=opts.save_total_limit, logging_steps=7, disable_tqdm=True, seed=3,
        resume_from_checkpoint="auto",
    )
    trainer = Trainer(model_init=WideRegression, args=args, train_dataset=RegressionDataset(256), callbacks=[Report()])
    trainer.train()
    trainer.save_model(opts.final)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
