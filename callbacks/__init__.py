"""The callback bus and the built-in callbacks. Knows nothing of ``trainer`` or ``integrations``."""

from .base import (
    EVENTS,
    CallbackHandler,
    ExportableState,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from .early_stopping import EarlyStoppingCallback
from .flow import DefaultFlowCallback
from .notebook import NotebookProgressCallback, in_notebook
from .profiler import ProfilerCallback
from .progress import PrinterCallback, ProgressCallback
from .strategies import IntervalStrategy, SaveStrategy

__all__ = [
    "EVENTS",
    "CallbackHandler",
    "DefaultFlowCallback",
    "EarlyStoppingCallback",
    "ExportableState",
    "IntervalStrategy",
    "NotebookProgressCallback",
    "PrinterCallback",
    "ProfilerCallback",
    "ProgressCallback",
    "SaveStrategy",
    "TrainerCallback",
    "TrainerControl",
    "TrainerState",
    "in_notebook",
]
