"""LoRA fine-tuning throughput, this Trainer vs transformers' Trainer: the same 4-layer GPT-2 (d=256) with LoRA
(r=8) on attention, the same variable-length data and padding collator, batch 8, one CPU thread. Label tokens
trained per second and peak memory of each, in alternating runs; the last line is ``ratio=<ours / transformers>``.

    python -m benchmarks.lora [--quick]
"""

from __future__ import annotations

import argparse

from benchmarks.lm_runs import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (a few minutes on 2 cores)")
    opts = parser.parse_args()
    steps, rounds = (8, 2) if opts.quick else (24, 3)
    common = dict(lora=True, batch=8, steps=steps, samples=8 * (steps + 1), collator="padded")
    ratio = compare("transformers Trainer", {**common, "library": "transformers"},
                    "trainforge Trainer", {**common, "library": "trainforge"}, rounds)
    print(f"ours / transformers label tokens per second, median of {rounds} rounds (goal >= 1.0)")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
