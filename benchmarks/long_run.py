"""Memory over a long run: RSS growth between step 2,000 and step 20,000 of the MLP with logging, evaluation
and checkpoints, against a hand-written loop doing the same steps (target: growth below 5%).

    python benchmarks/long_run.py [--steps 20000] [--quick]

The process's resident set size is read (psutil) at every 1,000th step; the table prints it and the growth
from the first reading at or after step 2,000 (allocator and import warm-up are done by then) to the last.
Logs every 50 steps, evaluates 1,000 samples and saves a checkpoint every 1,000 steps (keeping 2).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.steps import MLP, mlp_data  # noqa: E402


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def trainer_run(steps: int, every: int) -> dict[int, float]:
    from trainer import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    readings: dict[int, float] = {}

    class Rss(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                readings[state.global_step] = rss_mib()

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=32, learning_rate=1e-3,
                                 logging_steps=50, eval_strategy="steps", eval_steps=every, save_steps=every,
                                 save_total_limit=2, disable_tqdm=True, report_to="none", use_cpu=True)
        trainer = Trainer(MLP(), args, train_dataset=mlp_data(), eval_dataset=mlp_data(1000),
                          callbacks=[Rss()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return readings


def raw_run(steps: int, every: int) -> dict[int, float]:
    readings: dict[int, float] = {}
    model = MLP()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    loader = torch.utils.data.DataLoader(mlp_data(), batch_size=32, shuffle=True)
    done = 0
    while done < steps:
        for batch in loader:
            loss = model(**batch)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done % every == 0:
                readings[done] = rss_mib()
            if done == steps:
                break
    return readings


def growth(readings: dict[int, float], start: int) -> tuple[int, float, float]:
    first = min(s for s in readings if s >= start)
    last = max(readings)
    return first, readings[first], (readings[last] - readings[first]) / readings[first]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="600 steps, readings every 100: checks the script runs")
    opts = parser.parse_args(argv)
    steps, every, start = (600, 100, 200) if opts.quick else (opts.steps, 1000, 2000)
    torch.set_num_threads(1)
    gc.collect()
    begin = time.perf_counter()
    ours = trainer_run(steps, every)
    seconds = time.perf_counter() - begin
    raw = raw_run(steps, every)
    print(f"{steps} steps in {seconds:.0f} s; RSS (MiB) every {every} steps:")
    print("| step | trainforge | raw loop |\n|---|---|---|")
    for step in sorted(ours):
        print(f"| {step} | {ours[step]:.1f} | {raw.get(step, float('nan')):.1f} |")
    result = {}
    for name, readings in (("trainforge", ours), ("raw loop", raw)):
        first, base, ratio = growth(readings, start)
        result[name] = ratio
        print(f"{name}: RSS growth from step {first} ({base:.1f} MiB) to step {max(readings)}: {ratio * 100:+.2f}% "
              "(target < 5%)")
    return result


if __name__ == "__main__":
    main()
