"""LoRA fine-tuning throughput, this Trainer vs transformers' Trainer: the same 4-layer GPT-2 (d=256) with LoRA
(r=8) on attention, the same variable-length data and padding collator, batch 8, one CPU thread. Label tokens
trained per second and peak memory of each, in alternating runs; the last line is ``ratio=<ours / transformers>``.

    python -m benchmarks.lora [--quick]
"""

from __future__ import annotations

from benchmarks.lm_runs import benchmark_main


def runs(steps: int) -> tuple:
    common = dict(lora=True, batch=8, steps=steps, samples=8 * (steps + 1), collator="padded")
    return ("transformers Trainer", {**common, "library": "transformers"},
            "trainforge Trainer", {**common, "library": "trainforge"})


if __name__ == "__main__":
    benchmark_main(__doc__, runs, "ours / transformers label tokens per second (goal >= 1.0)")
