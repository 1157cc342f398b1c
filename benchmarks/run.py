"""Every benchmark in one run, as one table of ratios: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

    python -m benchmarks [--quick] [--repeats N] [--no-hf] [--only steps,import,checkpoint,resume]

Rows:
- training throughput (steps/s) of trainforge and of the HF Trainer (when ``transformers`` is
  installed) against a hand-written PyTorch loop doing the same work (``benchmarks/steps.py``);
- import time of ``from trainer import Trainer, TrainingArguments`` against ``import torch``
  (``benchmarks/importtime.py``);
- checkpoint save and load against bare safetensors + ``torch.save``, and the stall of
  ``save_async`` against a blocking save (``benchmarks/checkpointing.py``);
- resume cost at step 10,000 against step 10 (``benchmarks/resume.py``).

A ratio above 1 is better for throughput rows and worse for time rows; each row says which, with
its target. Throughput ratios are medians over rounds (each round runs every loop once, back to
back), with the interquartile range of the rounds in brackets: on a shared virtual machine one
run's speed drifts by tens of percent, and the range shows how far to trust the median. ``--quick`` runs a few steps of each, to check that the benchmarks work; its numbers
mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import checkpointing, importtime, resume, steps  # noqa: E402

SECTIONS = ("steps", "import", "checkpoint", "resume")


def machine() -> str:
    import psutil

    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count(logical=True)} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, torch {torch.__version__}, "
            f"python {platform.python_version()}, {torch.get_num_threads()} torch thread(s)")


def spread(values: list[float]) -> str:
    """The median and, over 4 or more values, the interquartile range: '0.991 (0.962-1.020)'."""
    middle = f"{statistics.median(values):.3f}"
    if len(values) < 4:
        return middle
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{middle} ({q1:.3f}-{q3:.3f})"


def row(name: str, ours: str, hf: str, ratio: str, target: str) -> str:
    return f"| {name} | {ours} | {hf} | {ratio} | {target} |"


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few steps of each: checks the benchmarks run")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each measurement (default 12; quick 1)")
    parser.add_argument("--no-hf", action="store_true", help="leave the HF Trainer out even when installed")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    opts = parser.parse_args(argv)
    only = set(opts.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    repeats = opts.repeats or (1 if opts.quick else 12)
    with_hf = not opts.no_hf and steps.hf_available()
    torch.set_num_threads(1)
    print(f"machine: {machine()}", flush=True)
    lines = ["| benchmark | trainforge | HF Trainer | ratio | target |", "|---|---|---|---|---|"]

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    print("\n".join(lines), flush=True)
    if "steps" in only:
        for case in steps.cases(opts.quick):
            runs = steps.measure(case, repeats, with_hf)
            raw = statistics.median(runs["raw"])
            ours = steps.ratios(runs, "trainforge")
            hf = spread(steps.ratios(runs, "hf")) + " x raw" if with_hf else "not installed"
            target = f">= {case.target} x raw" if case.target else "report"
            emit(row(f"steps/s, {case.name} (raw loop {raw:.1f}/s)", spread(ours) + " x raw", hf,
                     f"{statistics.median(ours):.3f}", target))
    if "import" in only:
        t = importtime.measure(repeats, with_hf)
        hf = f"{t['hf'] / t['torch']:.2f} x torch ({t['hf']:.2f} s)" if with_hf else "not installed"
        emit(row(f"import time (import torch {t['torch']:.2f} s)", f"{t['trainforge'] / t['torch']:.2f} x torch "
                 f"({t['trainforge']:.2f} s)", hf, f"{t['trainforge'] / t['torch']:.2f}", "<= 1.2 x torch"))
    if "checkpoint" in only:
        c = checkpointing.measure(repeats, opts.quick)
        size = f"{c['parameters'] / 1e6:.1f}M params"
        emit(row(f"checkpoint save, {size} (bare {c['bare save']:.2f} s)", f"{c['ours save']:.2f} s", "-",
                 f"{c['ours save'] / c['bare save']:.2f} x bare", "report (ours also fsyncs and writes resume state)"))
        emit(row(f"checkpoint load, {size} (bare {c['bare load']:.2f} s)", f"{c['ours load']:.2f} s", "-",
                 f"{c['ours load'] / c['bare load']:.2f} x bare", "report"))
        emit(row(f"save_async stall, {size} (blocking save {c['ours save']:.2f} s)", f"{c['async stall']:.2f} s",
                 "-", f"{c['async stall'] / c['ours save']:.2f} x blocking", "<= 0.25 x blocking"))
    if "resume" in only:
        points = (10, 200) if opts.quick else resume.POINTS
        ours, replay = resume.measure(repeats, points)
        small, large = points
        emit(row(f"resume to first step at k={large} vs k={small}", f"{ours[large] * 1000:.0f} ms vs "
                 f"{ours[small] * 1000:.0f} ms", "-", f"{ours[large] / ours[small]:.2f}",
                 f"~1 (replaying k batches: {replay[large] / replay[small]:.0f})"))
    return lines


if __name__ == "__main__":
    main()
