"""trainforge's Trainer: ``from trainer import Trainer, TrainingArguments`` is all most scripts need.

Importing this package loads torch and the package's own modules only; accelerate, datasets,
transformers and logging backends are imported when a Trainer needs them.
"""

import torch  # noqa: F401  (first, at the top of the import chain: torch's import costs more when it starts deep)

from callbacks import (
    DefaultFlowCallback,
    EarlyStoppingCallback,
    ExportableState,
    IntervalStrategy,
    NotebookProgressCallback,
    PrinterCallback,
    ProfilerCallback,
    ProgressCallback,
    SaveStrategy,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)

from .arguments import TrainingArguments
from .data import DataCollatorWithPadding, default_data_collator, sample_generator
from .optim import get_scheduler
from .outputs import EvalLoopOutput, EvalPrediction, PredictionOutput, TrainOutput
from .runtime import set_seed
from .seq2seq import Seq2SeqTrainer, Seq2SeqTrainingArguments
from .trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "DataCollatorWithPadding",
    "DefaultFlowCallback",
    "EarlyStoppingCallback",
    "EvalLoopOutput",
    "EvalPrediction",
    "ExportableState",
    "IntervalStrategy",
    "NotebookProgressCallback",
    "PredictionOutput",
    "ProfilerCallback",
    "PrinterCallback",
    "ProgressCallback",
    "SaveStrategy",
    "Seq2SeqTrainer",
    "Seq2SeqTrainingArguments",
    "Trainer",
    "TrainerCallback",
    "TrainerControl",
    "TrainerState",
    "TrainingArguments",
    "TrainOutput",
    "default_data_collator",
    "get_scheduler",
    "sample_generator",
    "set_seed",
]
