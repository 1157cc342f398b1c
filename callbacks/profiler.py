"""ProfilerCallback: torch.profiler over a few training steps, traces viewable in TensorBoard.

    trainer = Trainer(..., callbacks=[ProfilerCallback(wait=1, warmup=1, active=3)])
    # or TrainingArguments(profile=True): the same with the defaults below

After ``wait`` skipped steps and ``warmup`` steps profiled but discarded, ``active`` steps are recorded
(``repeat`` times); each cycle writes ``<dir>/<host>_<pid>.<time>.pt.trace.json`` (one file per process),
which TensorBoard's profiler plugin (``pip install torch-tb-profiler``; ``tensorboard --logdir DIR``),
``chrome://tracing`` or Perfetto open. The default ``dir`` is ``<logging_dir>/profile``.
"""

from __future__ import annotations

import logging
import os

from .base import TrainerCallback

logger = logging.getLogger(__name__)


class ProfilerCallback(TrainerCallback):
    def __init__(self, wait: int = 1, warmup: int = 1, active: int = 3, repeat: int = 1, output_dir: str | None = None,
                 record_shapes: bool = True, profile_memory: bool = False, with_stack: bool = False):
        for name, value, least in (("wait", wait, 0), ("warmup", warmup, 0), ("active", active, 1),
                                   ("repeat", repeat, 0)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"ProfilerCallback {name}={value!r} must be an integer >= {least}")
        self.schedule = {"wait": wait, "warmup": warmup, "active": active, "repeat": repeat}
        self.output_dir = output_dir
        self.options = {"record_shapes": record_shapes, "profile_memory": profile_memory, "with_stack": with_stack}
        self.profiler = None
        self.trace_dir: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        import torch.profiler as tp

        self.trace_dir = self.output_dir or os.path.join(args.logging_dir, "profile")
        activities = [tp.ProfilerActivity.CPU]
        import torch

        if torch.cuda.is_available() and not args.use_cpu:
            activities.append(tp.ProfilerActivity.CUDA)
        self.profiler = tp.profile(activities=activities, schedule=tp.schedule(**self.schedule),
                                   on_trace_ready=tp.tensorboard_trace_handler(self.trace_dir), **self.options)
        self.profiler.start()
        logger.info("Profiling steps %d-%d into %s", self.schedule["wait"] + self.schedule["warmup"] + 1,
                    self.schedule["wait"] + self.schedule["warmup"] + self.schedule["active"], self.trace_dir)

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None:
            self.profiler.step()

    def on_train_end(self, args, state, control, **kwargs):
        if self.profiler is not None:
            self.profiler.stop()
            self.profiler = None
