"""Per-step overhead of the Trainer against a hand-written PyTorch loop, measured in one run.

Both train the same 2-layer MLP on the same data with AdamW, a linear schedule and gradient
clipping, batch 32, on the CPU. The raw loop is what a careful user writes: forward, backward,
clip, step, schedule, zero_grad, loss kept as a tensor for logging. The Trainer runs with its
default callbacks (flow + progress bar off, printing every ``--log-every`` steps; the raw loop
syncs its loss at the same interval). Wall time and process CPU time are both reported (torch runs on one thread, so CPU time
counts this process's work and not its neighbours'). Both clocks start after the model exists and stop at the
last step, so the Trainer's setup inside ``train()`` (optimizer, dataloader, accelerate
preparation) counts against it. Runs alternate (raw, trainer, trainer, raw, raw, ...) and the median steps/s
of each is reported. The headline ratio trainer/raw compares the best run of each (on a shared
machine interference only ever slows a run down, as timeit assumes); the median of the ratios
of neighbouring runs is printed beside it.

    python benchmarks/overhead.py [--steps 2000] [--repeats 5]
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

from trainer import Trainer, TrainingArguments  # noqa: E402
from trainer.optim import get_scheduler  # noqa: E402

IN, HIDDEN, OUT, BATCH = 32, 64, 1, 32


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.net(x).squeeze(-1), labels)}


def make_data(n: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, IN, generator=g)
    return torch.utils.data.TensorDataset(x, x.sum(-1))


class DictDataset(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return {"x": x, "labels": y}


def raw_loop(dataset, steps: int, log_every: int) -> float:
    torch.manual_seed(0)
    model = MLP()
    start, cpu_start = time.perf_counter(), time.process_time()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = get_scheduler("linear", opt, 0, steps)
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=g)
    model.train()
    done, logged = 0, []
    running = torch.zeros(())
    while done < steps:
        for batch in loader:
            loss = model(**batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            running += loss.detach()
            done += 1
            if done % log_every == 0:
                logged.append(running.item() / log_every)
                running.zero_()
            if done == steps:
                break
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def trainer_loop(dataset, steps: int, log_every: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=1e-3,
            max_grad_norm=1.0, logging_steps=log_every, save_strategy="no", disable_tqdm=True,
            report_to="none", lr_scheduler_type="linear", seed=0,
        )
        trainer = Trainer(MLP(), args, train_dataset=dataset)
        trainer.callback_handler.pop_callback(trainer.callback_handler.callbacks[-1])  # no printing
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200, help="steps of each loop run once before timing")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    dataset = DictDataset(make_data(BATCH * 200))
    raw_loop(dataset, opts.warmup, opts.log_every)
    trainer_loop(dataset, opts.warmup, opts.log_every)
    raw, tf = [], []
    for i in range(opts.repeats):  # alternate which loop runs first, so neither gains from its place
        if i % 2 == 0:
            raw.append(raw_loop(dataset, opts.steps, opts.log_every))
            tf.append(trainer_loop(dataset, opts.steps, opts.log_every))
        else:
            tf.append(trainer_loop(dataset, opts.steps, opts.log_every))
            raw.append(raw_loop(dataset, opts.steps, opts.log_every))
    for label, index in (("wall", 0), ("cpu", 1)):
        r = statistics.median(v[index] for v in raw)
        t = statistics.median(v[index] for v in tf)
        pairs = [b[index] / a[index] for a, b in zip(raw, tf)]  # neighbours in time share the machine's load
        print(f"[{label}] raw loop : {r:8.1f} steps/s  (runs: {', '.join(f'{v[index]:.0f}' for v in raw)})")
        print(f"[{label}] trainer  : {t:8.1f} steps/s  (runs: {', '.join(f'{v[index]:.0f}' for v in tf)})")
        print(f"[{label}] paired ratios: {', '.join(f'{v:.3f}' for v in pairs)}")
        best = max(v[index] for v in tf) / max(v[index] for v in raw)
        print(f"[{label}] ratio trainer/raw = {best:.3f} best of {len(raw)} (interference only slows a run down); "
              f"median of pairs {statistics.median(pairs):.3f}; medians' ratio {t / r:.3f}; target >= 0.97")

if __name__ == "__main__":
    main()
