"""The string enums that say *when* something happens (logging, evaluation, saving)."""

from __future__ import annotations

from enum import Enum


class _StrEnum(str, Enum):
    """A str enum that compares equal to its value and prints as it."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]


class IntervalStrategy(_StrEnum):
    """When logging or evaluation happens: never, every N update steps, or at each epoch end."""

    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"


class SaveStrategy(_StrEnum):
    """When checkpoints are written; ``best`` saves whenever ``metric_for_best_model`` improves."""

    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"
    BEST = "best"
