"""The fields of ``TrainingArguments``, declared by section, one module each. ``TrainingArguments`` is one
flat dataclass built from these (``dataclasses.fields()``, ``HfArgumentParser``, ``to_dict()`` and pickling see
all fields as its own); a new field goes into the section it belongs to.

| module | class | holds |
|---|---|---|
| ``run.py`` | ``RunArguments`` | The run itself: where it writes, what a script runs, its name and its seeds. |
| ``optimization.py`` | ``OptimizationArguments`` | The optimization: batch, accumulation, optimizer, schedule, length of training, and what changes the step (clipping, label smoothing, gradient checkpointing, compilation, precision of the loss). |
| ``evaluation.py`` | ``EvaluationArguments`` | Evaluation during and after training, its metrics, and the best model. |
| ``logging.py`` | ``LoggingArguments`` | What the run logs, where, and how often; the progress display and the profiler. |
| ``checkpoints.py`` | ``CheckpointArguments`` | Checkpoints: when, how many, what they hold, and resuming from them. |
| ``devices.py`` | ``DeviceArguments`` | Devices, precision and processes: mixed precision, the process group, and the engines that shard training. |
| ``data.py`` | ``DataArguments`` | The data: dataloaders, the columns the model gets, batching by length. |
| ``hub.py`` | ``HubArguments`` | Pushing to the Hugging Face Hub. |
"""

from __future__ import annotations


def _help(text: str, **extra) -> dict:
    """Field metadata: the help text (``--help``, docs/arguments.md) and extras such as ``choices``."""
    return {"help": text, **extra}
