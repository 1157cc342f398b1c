"""Command-line latency: the wall time of ``trainforge env`` and ``trainforge --help``, each a fresh process (the
installed ``trainforge`` script, else ``python -m trainer.cli``); the median of the runs."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = (("env",), ("--help",))


def command() -> list[str]:
    script = shutil.which("trainforge", path=os.path.dirname(sys.executable)) or shutil.which("trainforge")
    return [script] if script else [sys.executable, "-m", "trainer.cli"]


def measure(repeats: int) -> dict[str, float]:
    base = command()
    env = {**os.environ, "PYTHONPATH": ROOT}
    runs = {" ".join(c): [] for c in COMMANDS}
    for _ in range(repeats):
        for words in COMMANDS:
            start = time.perf_counter()
            subprocess.run([*base, *words], capture_output=True, check=True, env=env, cwd=ROOT)
            runs[" ".join(words)].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in runs.items()}
