"""Which engine trains: the registry of engines and the selection from ``TrainingArguments``.

An engine is one module with a ``ParallelStrategy`` subclass (``integrations/strategy.py`` is the
interface) and one line in ``ENGINES``: the ``TrainingArguments`` field that turns it on, and where
its class lives. The module is imported only when a run (or the validation of the arguments) asks
for it. Adding an engine: write the module, add its field to ``TrainingArguments`` (section
"parallel"), add the registry line.
"""

from __future__ import annotations

import importlib

from .strategy import ParallelStrategy

#: the TrainingArguments field that selects an engine -> "module:class" of its strategy
ENGINES: dict[str, str] = {
    "deepspeed": "integrations.deepspeed:DeepSpeedStrategy",
    "sharded_ddp": "integrations.fairscale:ShardedDDPStrategy",
    "fsdp": "integrations.fsdp:FSDPStrategy",
}


def engine_class(argument: str) -> type[ParallelStrategy]:
    module, name = ENGINES[argument].split(":")
    return getattr(importlib.import_module(module), name)


def chosen_engines(args) -> list[str]:
    """The engine fields ``args`` sets, in registry order."""
    return [argument for argument in ENGINES if getattr(args, argument, None)]


def strategy_class(args) -> type[ParallelStrategy]:
    chosen = chosen_engines(args)
    return engine_class(chosen[0]) if chosen else ParallelStrategy


def validate_parallel_arguments(args) -> None:
    """One engine at a time, its companion arguments only with it, then the engine's own rules."""
    chosen = chosen_engines(args)
    if len(chosen) > 1:
        raise ValueError(f"{' and '.join(chosen)} were both set: choose one way to shard the training")
    for argument in ENGINES:
        if argument in chosen:
            continue
        engine = engine_class(argument)
        for companion in engine.companion_arguments:
            if getattr(args, companion, None):
                raise ValueError(f"{companion} is set but {argument} is not: set {engine.example} (or remove "
                                 f"{companion})")
    strategy_class(args).validate_arguments(args)


def selected_strategy(args) -> ParallelStrategy:
    """The strategy ``args`` asks for, else the default one."""
    return strategy_class(args).for_arguments(args)
