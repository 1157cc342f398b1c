"""The engine interface: everything the Trainer asks of a way to train in parallel.

``ParallelStrategy`` is the interface and the default engine at once: one process, or DDP, where
accelerate wraps the model. Each other engine (DeepSpeed ZeRO, FairScale sharded DDP, torch FSDP2)
subclasses it in its own module and is listed once in ``integrations/parallel.py``'s registry;
``Runtime``, the loops and the checkpoint code call these methods and never name an engine.

Order of calls in ``train()``::

    Strategy.validate_arguments(args)               # at TrainingArguments(...): the engine's own rules
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


class ParallelStrategy:
    """The default engine (one process, or DDP through accelerate) and the interface of the others."""

    name = "default"
    #: an engine other than the default: it keeps its own wrapped model for evaluation too
    is_engine = False
    #: the TrainingArguments field that selects this engine (None: the default)
    argument: str | None = None
    #: arguments that mean something only with this engine (set without it: an error)
    companion_arguments: tuple[str, ...] = ()
    #: how a user turns the engine on, for messages
    example = ""
    #: the model weights are loaded by the engine on resume (not from model.safetensors before prepare)
    engine_loads_weights = False
    #: the model's forward runs collectives (sharded parameters): every process must run each forward
    collective_forward = False
    #: the engine runs its own mixed precision and loss scaling (no torch GradScaler on the CPU)
    own_mixed_precision = False
    #: the engine owns the optimizer step (nonfinite_loss='skip' cannot drop it)
    owns_optimizer_step = False
    #: a step can be skipped by the engine (fp16 overflow): the scheduler then must not step
    may_skip_steps = False
    #: torch's GradScaler works with this engine's gradients (fp16=True)
    supports_grad_scaler = True
    #: resume reads the engine's own checkpoint files (resume_weights_only cannot apply)
    restores_own_files = False

    def __init__(self, args):
        self.args = args
        self.accelerator = None
        self.scaler = None
        self._plain_clip = True

    # -- arguments ------------------------------------------------------------------------
    @classmethod
    def validate_arguments(cls, args) -> None:
        """The rules this engine adds to ``TrainingArguments.validate`` (called when it is selected)."""
        if cls.argument is None:
            return
        if args.fp16 and not cls.supports_grad_scaler:
            raise ValueError(f"fp16=True with {cls.argument}: the gradient scaler does not support sharded gradients "
                             "here; use bf16=True")
        if args.save_async:
            raise ValueError(f"save_async=True with {cls.argument}: the engine writes its sharded checkpoint files "
                             "itself, from every process, during the save; unset save_async")
        if args.save_on_each_node:
            raise ValueError(f"save_on_each_node=True with {cls.argument}: sharded checkpoints are written by every "
                             "process into one directory, which needs a filesystem shared by the nodes; unset it")
        if args.resume_weights_only and cls.restores_own_files:
            raise ValueError(f"resume_weights_only=True works without an engine: {cls.argument} restores its own "
                             "checkpoint files; resume those with resume_weights_only=False")
        if args.nonfinite_loss == "skip" and cls.owns_optimizer_step:
            raise ValueError(f"nonfinite_loss='skip' cannot be used with {cls.argument}: its engine owns the optimizer "
                             "step (and its fp16 loss scaler already skips overflowing steps); use 'stop' or 'ignore'")

    @classmethod
    def for_arguments(cls, args) -> ParallelStrategy:
        """The strategy object for ``args`` (an engine may pick one of its variants here)."""
        return cls(args)

    # -- setup --------------------------------------------------------------------------
    def accelerator_kwargs(self, cuda: bool) -> dict:
        """Extra keyword arguments for ``Accelerator(...)`` (plugins, ``cpu``)."""
        return {"cpu": not cuda}

    def bind(self, accelerator) -> None:
        from accelerate.utils import DistributedType

        self.accelerator = accelerator
        self.scaler = accelerator.scaler
        # accelerate's clip_grad_norm_ re-checks the torch version and DTensors on every call
        # (~90 us per step on a small CPU model); plain and DDP runs need only torch's clip.
        self._plain_clip = accelerator.distributed_type in (
            DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU
        )

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
        model = self.accelerator.prepare_model(model)
        scheduler = make_scheduler(optimizer)
        if self.scaler is not None:  # fp16: accelerate's optimizer wrapper steps through the scaler
            optimizer = self.accelerator.prepare_optimizer(optimizer)
        return model, optimizer, scheduler

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The user's model inside the wrappers (DDP, torch.compile). Not accelerate's ``unwrap_model``,
        which imports DeepSpeed (seconds) when it is installed."""
        while True:
            if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
                model = model.module
            elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):  # torch.compile
                model = model._orig_mod
            else:
                return model

    # -- the step -------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def no_sync(self, model):
        if self.accelerator.num_processes > 1 and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()

    def clip_grad_norm(self, model, optimizer, parameters, max_norm: float) -> torch.Tensor:
        """Unscale (fp16) and clip; returns the total norm as a tensor (no device sync)."""
        if not self._plain_clip:
            return self.accelerator.clip_grad_norm_(parameters, max_norm)
        if self.scaler is not None:
            self.accelerator.unscale_gradients()
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

    def no_weights_file_note(self, directory: str) -> str:
        """Why ``save_model`` wrote no weights file into ``directory`` (``writes_weights_file(final=True)`` is
        False), and how to rebuild the full weights."""
        return f"{directory} holds the engine's checkpoint files only"


class EngineStrategy(ParallelStrategy):
    """Base of the engines other than the default: the engine keeps its own wrapped model, and
    accelerate (which knows its wrappers) unwraps it."""

    is_engine = True

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(model)
