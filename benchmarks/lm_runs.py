"""Shared by ``benchmarks.lora`` and ``benchmarks.packing``: a small causal LM, variable-length token data, and
one measured training run per subprocess (so that each run's peak memory is its own).

A run is ``python -m benchmarks.lm_runs '<json spec>'``; it prints one JSON line: label tokens trained per second
(padding excluded), the seconds of the timed steps, and the process's peak RSS. The clock starts after a warm-up
step and stops at the last step, read by a callback; each Trainer's own setup is outside it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sequences(n: int, seed: int = 0, shortest: int = 16, longest: int = 256) -> list[dict]:
    """Token sequences with long-tailed lengths (most short, a few long), as instruction data is."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        u = float(torch.rand((), generator=generator))
        length = int(shortest + (longest - shortest) * u ** 3)
        ids = torch.randint(1, 500, (length,), generator=generator).tolist()
        out.append({"input_ids": ids, "labels": list(ids)})
    return out


def pad_batch(features: list[dict]) -> dict:
    """Right padding to the longest sequence: pad id 0 with attention 0 and label -100."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": torch.zeros(len(features), longest, dtype=torch.long),
             "attention_mask": torch.zeros(len(features), longest, dtype=torch.long),
             "labels": torch.full((len(features), longest), -100)}
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        batch["input_ids"][row, :n] = torch.as_tensor(f["input_ids"])
        batch["attention_mask"][row, :n] = 1
        batch["labels"][row, :n] = torch.as_tensor(f["labels"])
    return batch


def model(lora: bool):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=512, n_positions=256)
    base = transformers.GPT2LMHeadModel(config)
    if not lora:
        return base
    import peft

    return peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn", "c_proj"],
                                                     fan_in_fan_out=True, lora_dropout=0.0, task_type="CAUSAL_LM"))


def run_one(spec: dict) -> dict:
    """Train ``spec["steps"]`` steps (after one warm-up) with spec's library and collator; the measurements."""
    import torch
    import transformers

    torch.set_num_threads(1)
    sys.path.insert(0, ROOT)
    data = sequences(spec["samples"])
    collator = transformers.DataCollatorWithFlattening() if spec["collator"] == "packed" else pad_batch
    if spec["library"] == "transformers":
        Trainer, Arguments, Callback = transformers.Trainer, transformers.TrainingArguments, transformers.TrainerCallback
    else:
        from trainer import Trainer
        from trainer import TrainerCallback as Callback
        from trainer import TrainingArguments as Arguments
    marks = {}

    class Clock(Callback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                marks["start"] = time.perf_counter()
            marks["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        values = dict(output_dir=out, max_steps=spec["steps"] + 1, per_device_train_batch_size=spec["batch"],
                      learning_rate=1e-4, report_to="none", disable_tqdm=True, save_strategy="no",
                      logging_steps=10_000, train_sampling_strategy="sequential", dataloader_pin_memory=False)
        if spec["library"] == "transformers":
            values["use_cpu"] = True
        trainer = Trainer(model(spec["lora"]), Arguments(**values), train_dataset=data, data_collator=collator,
                          callbacks=[Clock()])
        trainer.train()
    per_step = spec["batch"]
    tokens = sum(len(s["labels"]) - 1 for s in data[per_step:per_step * (spec["steps"] + 1)])  # after the warm-up
    seconds = marks["end"] - marks["start"]
    return {"tokens_per_second": tokens / seconds, "seconds": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(spec: dict) -> dict:
    """One run in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT, "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.lm_runs", json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(name_a: str, spec_a: dict, name_b: str, spec_b: dict, rounds: int) -> float:
    """Runs a and b in alternating order, ``rounds`` times; prints each and the medians; returns the median of the
    per-round ratios b / a in tokens per second."""
    ratios, results = [], {name_a: [], name_b: []}
    for r in range(rounds):
        order = [(name_a, spec_a), (name_b, spec_b)] if r % 2 == 0 else [(name_b, spec_b), (name_a, spec_a)]
        got = {name: measure(spec) for name, spec in order}
        for name in (name_a, name_b):
            results[name].append(got[name])
        ratios.append(got[name_b]["tokens_per_second"] / got[name_a]["tokens_per_second"])
    print(f"{'run':<34}{'tokens/s (median)':>18}{'peak RSS MiB':>14}")
    for name in (name_a, name_b):
        rows = results[name]
        print(f"{name:<34}{statistics.median(r['tokens_per_second'] for r in rows):>18.0f}"
              f"{max(r['peak_rss_mib'] for r in rows):>14.0f}")
    return statistics.median(ratios)


def benchmark_main(doc: str, runs, goal: str) -> None:
    """The command line of a two-run benchmark: ``runs(steps)`` gives ``(name_a, spec_a, name_b, spec_b)``; prints the
    table, the goal and ``ratio=<b / a>``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (under a minute on 2 cores)")
    opts = parser.parse_args()
    steps, rounds = (8, 2) if opts.quick else (24, 3)
    ratio = compare(*runs(steps), rounds)
    print(f"{goal}, median of {rounds} rounds")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    print(json.dumps(run_one(json.loads(sys.argv[1]))))
