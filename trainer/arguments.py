"""TrainingArguments: every knob of a run, with help text. The fields are declared by section in
``argument_sections/``; the rules are in ``argument_checks.py``.

The help of each field lives in ``field(metadata={"help": ...})`` so the CLI ``--help``,
the docs and the YAML presets come from one source. ``validate()`` runs every rule; it runs
in ``__post_init__`` and again when a Trainer is built (arguments may be edited in between).
Steps given as a float below 1 (``logging_steps=0.1``) are a fraction of the total steps,
resolved by :func:`resolve_steps` once the total is known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

from callbacks.strategies import IntervalStrategy, SaveStrategy

from .argument_api import ArgumentsApi
from .argument_checks import (
    check_arguments,
    normalize_arguments,
)
from .argument_sections import _help  # noqa: F401  (seq2seq's fields use it)
from .argument_sections.checkpoints import CheckpointArguments
from .argument_sections.data import DataArguments
from .argument_sections.devices import DeviceArguments
from .argument_sections.evaluation import EvaluationArguments
from .argument_sections.hub import HubArguments
from .argument_sections.logging import LoggingArguments
from .argument_sections.optimization import OptimizationArguments
from .argument_sections.run import RunArguments


@dataclass
class TrainingArguments(
    ArgumentsApi, HubArguments, DataArguments, DeviceArguments, CheckpointArguments, LoggingArguments, EvaluationArguments,
    OptimizationArguments, RunArguments,
):
    """Arguments of a training run. Names and defaults follow the Hugging Face Trainer's.

    One flat dataclass: its fields are declared by section in ``trainer/argument_sections/`` (the bases are
    listed last section first, since a dataclass takes its bases' fields in reverse order; ``output_dir``
    stays the first field, as positional construction expects). ``ArgumentsApi`` (``argument_api.py``) adds
    transformers' properties and methods beyond the fields.
    """

    # ------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Aliases and string forms normalised, defaults that depend on other fields filled, then validated
        (``trainer/argument_checks.py``)."""
        normalize_arguments(self)

    def validate(self) -> None:
        """Check every rule (``trainer/argument_checks.py``); raise ValueError naming the argument, its value
        and the fix."""
        check_arguments(self)

    # ------------------------------------------------------------------------------------
    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def world_size(self) -> int:
        return _dist_value("get_world_size", "WORLD_SIZE", 1)

    @property
    def process_index(self) -> int:
        return _dist_value("get_rank", "RANK", 0)

    @property
    def local_process_index(self) -> int:
        return self.local_rank if self.local_rank != -1 else 0

    @property
    def device(self):
        """This process's device: ``cuda:{local_rank}`` with CUDA (unless use_cpu), else the CPU."""
        import torch

        if self.use_cpu or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_process_index)

    @property
    def n_gpu(self) -> int:
        """GPUs this process uses: 1 with CUDA (one device per process), else 0."""
        return 0 if self.device.type == "cpu" else 1

    @property
    def mixed_precision(self) -> str:
        return "fp16" if self.fp16 else "bf16" if self.bf16 else "no"

    @contextlib.contextmanager
    def main_process_first(self, local: bool = True, desc: str = "work"):
        """Run the body on the main process first (e.g. dataset preprocessing), then on the others."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or self.world_size == 1:
            yield
            return
        is_main = (self.local_process_index if local else self.process_index) == 0
        if not is_main:
            dist.barrier()
        yield
        if is_main:
            dist.barrier()

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (enums as strings), aliases left out."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "evaluation_strategy":
                continue
            value = getattr(self, f.name)
            if f.name.endswith("_token") and value is not None:
                value = f"<{f.name.upper()}>"  # a secret: never written to training_args.json or logged
            out[f.name] = value.value if isinstance(value, (IntervalStrategy, SaveStrategy)) else value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_sanitized_dict(self) -> dict[str, Any]:
        """Only int/float/str/bool/None values (lists and dicts as strings), for logging backends."""
        return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingArguments:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainingArguments field(s): {unknown}; see `trainforge train --help` for the list")
        return cls(**data)

    @classmethod
    def from_json(cls, path_or_text: str) -> TrainingArguments:
        """From a JSON file path or a JSON string."""
        text = path_or_text
        if not path_or_text.lstrip().startswith("{"):
            with open(path_or_text, encoding="utf-8") as f:
                text = f.read()
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_yaml(cls, path: str) -> TrainingArguments:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str) -> TrainingArguments:
        """From a .json, .yaml or .yml file."""
        if path.endswith((".yaml", ".yml")):
            return cls.from_yaml(path)
        if path.endswith(".json"):
            return cls.from_json(path)
        raise ValueError(f"config file {path!r}: use a .json, .yaml or .yml file")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    def __str__(self) -> str:
        body = ",\n".join(f"  {k}={v!r}" for k, v in sorted(self.to_dict().items()))
        return f"{type(self).__name__}(\n{body}\n)"

    __repr__ = __str__


def resolve_steps(value: float, max_steps: int) -> int:
    """Steps argument -> whole steps: a float below 1 is a fraction of ``max_steps`` (rounded up)."""
    if value < 1:
        return max(1, math.ceil(max_steps * value))
    return int(value)


def _dist_value(getter: str, env: str, default: int) -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return getattr(dist, getter)()
    return int(os.environ.get(env, default))
