"""Speed and memory metrics of a train/eval/predict call.

| key                                 | meaning                                        |
|-------------------------------------|------------------------------------------------|
| ``{split}_runtime``                 | seconds of the call                            |
| ``{split}_samples_per_second``      | samples processed / runtime                    |
| ``{split}_steps_per_second``        | optimizer steps (train) or batches / runtime   |
| ``train_tokens_per_second``         | input tokens of all processes / runtime        |
| ``{split}_mem_cpu_alloc_delta``     | RSS at the end minus at the start, bytes       |
| ``{split}_mem_cpu_peaked_delta``    | peak RSS above the end value, bytes (sampled)  |
| ``{split}_mem_gpu_alloc_delta``     | CUDA allocated at the end minus at the start    |
| ``{split}_mem_gpu_peaked_delta``    | CUDA peak above the end value                   |

Memory metrics come from psutil and are off unless ``skip_memory_metrics=False``. As in transformers, the
creation of the Trainer is measured too (``init_mem_*``, and ``before_init_mem_cpu``, the RSS it started at) and
reported with the first train/evaluate/predict call; evaluate() returns its memory metrics but does not log them.
"""

from __future__ import annotations

import threading
import time


def speed_metrics(split: str, start_time: float, num_samples: int | None = None, num_steps: int | None = None,
                  num_tokens: int | None = None) -> dict:
    runtime = time.time() - start_time  # start_time from time.time(), as transformers' speed_metrics takes it
    out = {f"{split}_runtime": round(runtime, 4)}
    if runtime > 0:
        for unit, count in (("samples", num_samples), ("steps", num_steps), ("tokens", num_tokens)):
            if count is not None:
                out[f"{split}_{unit}_per_second"] = round(count / runtime, 3)
    return out


class MemoryTracker:
    """Measures RSS (and CUDA memory) deltas around a call; a thread samples the RSS peak."""

    def __init__(self, skip: bool):
        self.skip = skip
        self._stop = threading.Event()
        self._thread = None
        self._init_metrics: dict | None = None  # the Trainer's creation, added to the first split measured after

    def start(self) -> None:
        if self.skip:
            return
        import psutil
        import torch

        self._process = psutil.Process()
        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
            self._gpu_begin = torch.cuda.memory_allocated()
        self._begin = self._process.memory_info().rss
        self._peak = self._begin
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def stop_and_update(self, split: str, metrics: dict) -> None:
        """End the measurement; add ``{split}_mem_*`` to ``metrics``. Split "init" (the Trainer's creation) is
        kept and added, with ``before_init_mem_cpu``, to the metrics of the first split measured after it."""
        if self.skip or self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if split == "init":
            self._init_metrics = {}
            self._update(split, self._init_metrics)
            self._init_metrics["before_init_mem_cpu"] = self._begin
            if self._cuda:
                self._init_metrics["before_init_mem_gpu"] = self._gpu_begin
            return
        if self._init_metrics:
            metrics.update(self._init_metrics)
            self._init_metrics = {}
        self._update(split, metrics)

    def _update(self, split: str, metrics: dict) -> None:
        end = self._process.memory_info().rss
        self._peak = max(self._peak, end)
        metrics[f"{split}_mem_cpu_alloc_delta"] = end - self._begin
        metrics[f"{split}_mem_cpu_peaked_delta"] = max(0, self._peak - end)
        if self._cuda:
            import torch

            gpu_end = torch.cuda.memory_allocated()
            metrics[f"{split}_mem_gpu_alloc_delta"] = gpu_end - self._gpu_begin
            metrics[f"{split}_mem_gpu_peaked_delta"] = max(0, torch.cuda.max_memory_allocated() - gpu_end)
