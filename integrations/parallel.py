"""Parallel training strategies behind one small interface.

The Trainer's loop and checkpoint code call these methods and nothing engine-specific; each
engine (DeepSpeed ZeRO, FairScale sharded DDP, torch FSDP2) is a subclass in its own module,
imported only when ``TrainingArguments`` asks for it. ``ParallelStrategy`` itself is the
plain/DDP behaviour, where accelerate does the wrapping.

Order of calls in ``train()``::

    strategy.bind(accelerator)                      # once, after the Accelerator exists
    model = strategy.shard(model)                   # FSDP: before the optimizer sees parameters
    optimizer = strategy.wrap_optimizer(optimizer)  # FairScale: OSS
    model, optimizer, scheduler = strategy.prepare(model, optimizer, make_scheduler, max_steps, warmup)
    per micro-batch: strategy.backward(loss)  (inside strategy.no_sync(model) but for the last one)
    per step: strategy.clip_grad_norm(...) -> optimizer.step() -> scheduler.step()
    checkpoint: strategy.model_state_dict / optimizer_state_dict (collective) -> files written by
                the main process -> strategy.save_engine_state (collective)
    resume: strategy.load_engine_state / load_optimizer_state after prepare
"""

from __future__ import annotations

import contextlib
import copy
import json
import os

import torch


def load_json_option(name: str, value) -> dict:
    """An argument given as a dict, a JSON object string or a JSON file path, as a fresh dict."""
    if isinstance(value, dict):
        return copy.deepcopy(value)
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}={value!r}: pass a JSON file path or a dict")
    text = os.fspath(value)
    if not text.lstrip().startswith("{"):
        if not os.path.isfile(text):
            raise FileNotFoundError(f"{name}={text!r}: no such file; pass a JSON file path or a dict")
        with open(text, encoding="utf-8") as f:
            text = f.read()
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}={value!r} is not valid JSON: {e}") from e
    if not isinstance(loaded, dict):
        raise ValueError(f"{name}={value!r}: expected a JSON object")
    return loaded


def parse_options(name: str, value, valid: tuple[str, ...]) -> list[str]:
    """``"a b"`` or ``["a", "b"]`` -> ``["a", "b"]``; options outside ``valid`` are an error."""
    if not value:
        return []
    options = value.split() if isinstance(value, str) else list(value)
    unknown = [o for o in options if o not in valid]
    if unknown:
        raise ValueError(f"{name}={value!r}: unknown option(s) {unknown}; choose from {list(valid)}")
    return options


def selected_strategy(args) -> ParallelStrategy:
    """The strategy ``args`` asks for (``deepspeed``, ``sharded_ddp``, ``fsdp``), else the plain one."""
    if args.deepspeed:
        from .deepspeed import DeepSpeedStrategy

        return DeepSpeedStrategy(args)
    if args.sharded_ddp:
        from .fairscale import FULLY_SHARDED, FairScaleFSDPStrategy, ShardedDDPStrategy, parse_sharded_ddp

        fully = any(o in FULLY_SHARDED for o in parse_sharded_ddp(args.sharded_ddp))
        return FairScaleFSDPStrategy(args) if fully else ShardedDDPStrategy(args)
    if args.fsdp:
        from .fsdp import FSDPStrategy

        return FSDPStrategy(args)
    return ParallelStrategy(args)


class ParallelStrategy:
    """Plain and DDP training: accelerate wraps the model; files hold full states."""

    name = "ddp"
    #: the model weights are loaded by the engine on resume (not from model.safetensors before prepare)
    engine_loads_weights = False
    #: the model's forward runs collectives (sharded parameters): every process must run each forward
    collective_forward = False

    def __init__(self, args):
        self.args = args
        self.accelerator = None

    # -- setup --------------------------------------------------------------------------
    def accelerator_kwargs(self, cuda: bool) -> dict:
        """Extra keyword arguments for ``Accelerator(...)`` (plugins, ``cpu``)."""
        return {"cpu": not cuda}

    def bind(self, accelerator) -> None:
        self.accelerator = accelerator

    def require_process_group(self, argument: str) -> None:
        """Engines built on torch.distributed need a launched run (even of one process)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                f"{argument} needs a distributed launch: run the script with `torchrun --nproc_per_node=N` (or "
                f"`accelerate launch`); a single process without a launcher trains without {argument.split('=')[0]}"
            )

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def wrap_optimizer(self, optimizer):
        return optimizer

    def prepare_for_evaluation(self, model):
        """The model evaluation runs outside training (the engine wraps it at ``train()`` only)."""
        return self.accelerator.prepare_model(model)

    def prepare(self, model, optimizer, make_scheduler, max_steps: int, warmup_steps: int):
        """Wrap for distribution; ``make_scheduler(optimizer)`` builds (or returns) the Trainer's schedule
        on the optimizer that really steps. Returns ``(model, optimizer, scheduler)``."""
        return self.accelerator.prepare_model(model), optimizer, make_scheduler(optimizer)

    # -- the step -------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def no_sync(self, model):
        if self.accelerator.num_processes > 1 and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()

    def clip_grad_norm(self, model, optimizer, parameters, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    # -- checkpoints (every method is called on every process) ----------------------------
    def writes_weights_file(self, final: bool = False) -> bool:
        """Whether the main process writes the full weights (``final``: for ``save_model``); False when
        only the engine's own files hold them (ZeRO-3 without gathering, sharded FSDP checkpoints)."""
        return True

    def model_state_dict(self, model, final: bool = False) -> dict | None:
        """The full weights for the main process to write (collective where the engine shards them);
        None means: write the unwrapped model itself."""
        return None

    def optimizer_state_dict(self, optimizer) -> dict | None:
        """The full optimizer state for the main process to write as ``optimizer.pt`` (None: not written)."""
        return optimizer.state_dict()

    def save_engine_state(self, directory: str, step: int) -> None:
        """Files the engine writes itself, from every process (DeepSpeed, sharded FSDP)."""

    def has_engine_state(self, directory: str) -> bool:
        return False

    def load_engine_state(self, directory: str, model, optimizer, load_optimizer: bool = True) -> None:
        """Restore what ``save_engine_state`` wrote (weights, and the optimizer when asked)."""

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def load_full_state_dict(self, model, state_dict: dict) -> bool:
        """Load full weights into a model this engine sharded; False: not sharded, load the usual way."""
        return False
