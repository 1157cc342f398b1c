"""Padding-free packing vs padding, on this Trainer: a 4-layer GPT-2 (d=256) on long-tailed variable-length
sequences (16 to 256 tokens, most short), batch 8, one CPU thread. Label tokens trained per second (padding not
counted) and peak memory of each, in alternating runs; the last line is ``ratio=<packed / padded>``.

    python -m benchmarks.packing [--quick]
"""

from __future__ import annotations

from benchmarks.lm_runs import benchmark_main


def runs(steps: int) -> tuple:
    common = dict(library="trainforge", lora=False, batch=8, steps=steps, samples=8 * (steps + 1))
    return ("padded (DataCollator, pad to longest)", {**common, "collator": "padded"},
            "packed (DataCollatorWithFlattening)", {**common, "collator": "packed"})


if __name__ == "__main__":
    benchmark_main(__doc__, runs, "packed / padded label tokens per second (goal >= 1.3)")
