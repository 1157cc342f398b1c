"""Padding-free packing vs padding, on this Trainer: a 4-layer GPT-2 (d=256) on long-tailed variable-length
sequences (16 to 256 tokens, most short), batch 8, one CPU thread. Label tokens trained per second (padding not
counted) and peak memory of each, in alternating runs; the last line is ``ratio=<packed / padded>``.

    python -m benchmarks.packing [--quick]
"""

from __future__ import annotations

import argparse

from benchmarks.lm_runs import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (a few minutes on 2 cores)")
    opts = parser.parse_args()
    steps, rounds = (8, 2) if opts.quick else (24, 3)
    common = dict(library="trainforge", lora=False, batch=8, steps=steps, samples=8 * (steps + 1))
    ratio = compare("padded (DataCollator, pad to longest)", {**common, "collator": "padded"},
                    "packed (DataCollatorWithFlattening)", {**common, "collator": "packed"}, rounds)
    print(f"packed / padded label tokens per second, median of {rounds} rounds (goal >= 1.3)")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
