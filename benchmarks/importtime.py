"""Import time: ``from trainer import Trainer, TrainingArguments`` against ``import torch`` (and the HF
Trainer's import), each timed inside a fresh interpreter; the fastest of the runs is kept."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATEMENTS = {
    "torch": "import torch",
    "trainforge": "from trainer import Trainer, TrainingArguments",
    "hf": "from transformers import Trainer, TrainingArguments",
}


def seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def measure(repeats: int, with_hf: bool) -> dict[str, float]:
    names = [n for n in STATEMENTS if with_hf or n != "hf"]
    runs = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            runs[name].append(seconds(STATEMENTS[name]))
    return {name: min(values) for name, values in runs.items()}
