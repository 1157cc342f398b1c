"""Every benchmark in one run, as one table of ratios: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

    python -m benchmarks [--quick] [--repeats N] [--no-hf] [--only steps,import,startup,eval,checkpoint,resume,cli]

Rows:
- training throughput (steps/s) of trainforge and of the HF Trainer (when ``transformers`` is
  installed) against a hand-written PyTorch loop doing the same work (``benchmarks/steps.py``);
- import time of ``from trainer import Trainer, TrainingArguments`` against ``import torch``
  (``benchmarks/importtime.py``);
- start-up: ``python script.py`` and ``Trainer(...)`` to the end of the first optimizer step, against the HF
  Trainer and a raw loop, on the quickstart and a tiny transformers model (``benchmarks/startup.py``);
- ``evaluate()`` samples/s with ``compute_metrics`` against a raw ``no_grad`` loop and the HF Trainer, also with
  ``eval_accumulation_steps`` and ``preprocess_logits_for_metrics`` (``benchmarks/evaluation.py``);
- checkpoint save and load against bare safetensors + ``torch.save`` and against the HF Trainer's, and the
  stall of ``save_async`` against a blocking save (``benchmarks/checkpointing.py``);
- resume cost at step 10,000 against step 10 (``benchmarks/resume.py``);
- ``trainforge env`` and ``trainforge --help`` wall time (``benchmarks/cli.py``).

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

from benchmarks import checkpointing, cli, evaluation, importtime, resume, startup, steps  # noqa: E402

SECTIONS = ("steps", "import", "startup", "eval", "checkpoint", "resume", "cli")


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
    if "startup" in only:
        cases = ("quickstart",) if opts.quick else startup.CASES
        s = startup.measure(min(repeats, 3), with_hf, cases)
        for case, by in s.items():
            for key, label in (("process_to_step", "python script.py"), ("trainer_to_step", "Trainer(...)")):
                ours, raw = by["trainforge"][key], by["raw"][key]
                hf = f"{by['transformers'][key]:.2f} s" if with_hf else "not installed"
                ratio = f"{ours / by['transformers'][key]:.2f} x HF" if with_hf else "-"
                emit(row(f"start-up, {label} to step 1, {case} (raw loop {raw:.2f} s)", f"{ours:.2f} s", hf, ratio,
                         "<= 0.5 x HF"))
    if "eval" in only:
        e = evaluation.measure(repeats, with_hf, opts.quick)
        for case, values in e.items():
            hf = spread(values["transformers"]) + " x raw" if with_hf else "not installed"
            for variant in [v for v in values if v.startswith("trainforge")]:
                name = f"evaluate() samples/s, {case}" + variant[len("trainforge"):]
                target = ">= 0.97 x raw, ahead of HF" if variant == "trainforge" else ">= 0.97 x raw"
                emit(row(f"{name} (raw loop {values['raw']:.0f}/s)", spread(values[variant]) + " x raw",
                         hf if variant == "trainforge" else "-", f"{statistics.median(values[variant]):.3f}",
                         target))
    if "checkpoint" in only:
        c = checkpointing.measure(repeats, opts.quick, with_hf)
        size = f"{c['parameters'] / 1e6:.1f}M params"
        for kind in ("save", "load"):
            ours, bare = c[f"ours {kind}"], c[f"bare {kind}"]
            hf = f"{c[f'hf {kind}']:.2f} s" if with_hf else "not installed"
            ratio = f"{ours / c[f'hf {kind}']:.2f} x HF" if with_hf else f"{ours / bare:.2f} x bare"
            note = " (ours also fsyncs)" if kind == "save" else ""
            emit(row(f"checkpoint {kind}, {size} (bare {bare:.2f} s)", f"{ours:.2f} s", hf, ratio,
                     f"<= 1.0 x HF{note}"))
        emit(row(f"save_async stall, {size} (blocking save {c['ours save']:.2f} s)", f"{c['async stall']:.2f} s",
                 "-", f"{c['async stall'] / c['ours save']:.2f} x blocking", "<= 0.25 x blocking"))
    if "resume" in only:
        points = (10, 200) if opts.quick else resume.POINTS
        ours, replay = resume.measure(repeats, points)
        small, large = points
        emit(row(f"resume to first step at k={large} vs k={small}", f"{ours[large] * 1000:.0f} ms vs "
                 f"{ours[small] * 1000:.0f} ms", "-", f"{ours[large] / ours[small]:.2f}",
                 f"~1 (replaying k batches: {replay[large] / replay[small]:.0f})"))
    if "cli" in only:
        for name, seconds in cli.measure(min(repeats, 5)).items():
            emit(row(f"trainforge {name}", f"{seconds:.2f} s", "-", "-", "< 1.5 s"))
    return lines


if __name__ == "__main__":
    main()
