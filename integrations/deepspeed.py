"""DeepSpeed ZeRO (stages 1-3, CPU offload) through accelerate's ``DeepSpeedPlugin``.

``TrainingArguments(deepspeed=...)`` takes a JSON file path or a dict. Values written
``"auto"`` are filled from the arguments, and an explicit value that disagrees with the
arguments is an error; every disagreement is listed in one message.

=====================================================  ==========================================
config key                                             filled from
=====================================================  ==========================================
train_micro_batch_size_per_gpu                         per_device_train_batch_size
gradient_accumulation_steps                            gradient_accumulation_steps
train_batch_size                                       micro batch x accumulation x world size
gradient_clipping                                      max_grad_norm
optimizer.params.lr / betas / eps / weight_decay       learning_rate / adam_beta1,2 / adam_epsilon /
                                                       weight_decay
scheduler.params.warmup_max_lr / warmup_min_lr         learning_rate / 0
scheduler.params.warmup_num_steps / total_num_steps    warmup_steps or warmup_ratio / max_steps (at train())
fp16.enabled / bf16.enabled                            fp16 / bf16
zero_optimization.reduce_bucket_size,                  the model's ``config.hidden_size`` (h*h, 0.9*h*h,
stage3_prefetch_bucket_size,                           10*h), DeepSpeed's defaults for models without one
stage3_param_persistence_threshold                     (at train())
=====================================================  ==========================================

Optimizer and scheduler: with an ``optimizer`` section DeepSpeed builds the optimizer; with a
``scheduler`` section DeepSpeed steps the schedule; otherwise the Trainer's own are used
(``zero_allow_untested_optimizer`` is set for them).

Checkpoints go through the engine: ``engine.save_checkpoint`` writes ``global_step{N}/``
(model states, every rank's optimizer partition), ``latest`` and DeepSpeed's
``zero_to_fp32.py`` into ``checkpoint-{N}/`` and ``engine.load_checkpoint`` resumes from it.
``model.safetensors`` is written too: the full weights with ZeRO 1/2, and with ZeRO-3 the 16-bit
weights gathered from every rank when ``stage3_gather_16bit_weights_on_model_save`` is true.
Without that flag a ZeRO-3 checkpoint holds partitions only: :func:`load_fp32_weights` (or
``python checkpoint-N/zero_to_fp32.py checkpoint-N out_dir``) rebuilds the full fp32 weights.
"""

from __future__ import annotations

import logging
import os
import sys

import torch

from .strategy import EngineStrategy, load_json_option

logger = logging.getLogger(__name__)

AUTO = "auto"
ENGINE_STATE_FILE = "latest"  # written by engine.save_checkpoint next to global_step{N}/
# DeepSpeed's own defaults, used for hidden-size based "auto" values when the model has no config.hidden_size
_BUCKET_DEFAULTS = {
    "zero_optimization.reduce_bucket_size": 500_000_000,
    "zero_optimization.stage3_prefetch_bucket_size": 50_000_000,
    "zero_optimization.stage3_param_persistence_threshold": 100_000,
}


# -- configuration ------------------------------------------------------------------------
def load_config(value) -> dict:
    """A fresh copy of the config given as a dict, a JSON string or a JSON file path, its sections checked."""
    config = load_json_option("deepspeed", value)
    if "scheduler" in config and "optimizer" not in config:
        raise ValueError("the DeepSpeed config has a 'scheduler' but no 'optimizer' section: DeepSpeed schedules "
                         "only its own optimizer; add an 'optimizer' section or remove the 'scheduler'")
    return config


def _lookup(config: dict, dotted: str):
    node = config
    *parents, key = dotted.split(".")
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return None, None
    return node, key


class ConfigFiller:
    """Fills "auto" values and records explicit values that disagree with the arguments."""

    def __init__(self, config: dict):
        self.config = config
        self.mismatches: list[str] = []

    def fill(self, dotted: str, value, source: str, must_match: bool = True) -> None:
        node, key = _lookup(self.config, dotted)
        if node is None or key not in node:
            return
        current = node[key]
        if current == AUTO:
            node[key] = value
        elif must_match and not _same(current, value):
            self.mismatches.append(f"- {dotted}={current!r} but {source}={value!r}")

    def check(self) -> None:
        if self.mismatches:
            raise ValueError(
                "the DeepSpeed config disagrees with TrainingArguments:\n" + "\n".join(self.mismatches) +
                "\nSet these config values to \"auto\" (filled from the arguments) or make both sides equal."
            )

    def remaining_auto(self, prefix: str = "") -> list[str]:
        found = []

        def walk(node, path):
            for key, value in node.items():
                name = f"{path}.{key}" if path else key
                if isinstance(value, dict):
                    walk(value, name)
                elif value == AUTO:
                    found.append(name)

        walk(self.config, prefix)
        return found


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    return a == b


def fill_from_arguments(config: dict, args, world_size: int) -> dict:
    """Fill the values known from the arguments alone; raise on disagreement (all listed)."""
    filler = ConfigFiller(config)
    micro, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    filler.fill("train_micro_batch_size_per_gpu", micro, "per_device_train_batch_size")
    filler.fill("gradient_accumulation_steps", accum, "gradient_accumulation_steps")
    filler.fill("train_batch_size", micro * accum * world_size,
                f"per_device_train_batch_size x gradient_accumulation_steps x world size ({world_size})")
    filler.fill("gradient_clipping", args.max_grad_norm or 0.0, "max_grad_norm")
    filler.fill("optimizer.params.lr", args.learning_rate, "learning_rate")
    filler.fill("optimizer.params.betas", [args.adam_beta1, args.adam_beta2], "[adam_beta1, adam_beta2]")
    filler.fill("optimizer.params.eps", args.adam_epsilon, "adam_epsilon")
    filler.fill("optimizer.params.weight_decay", args.weight_decay, "weight_decay")
    filler.fill("scheduler.params.warmup_min_lr", 0, "warmup_min_lr", must_match=False)
    filler.fill("scheduler.params.warmup_max_lr", args.learning_rate, "learning_rate")
    filler.fill("fp16.enabled", bool(args.fp16), "fp16")
    filler.fill("bf16.enabled", bool(args.bf16), "bf16")
    for section, flag in (("fp16", args.fp16), ("bf16", args.bf16)):
        enabled = config.get(section, {}).get("enabled", False)
        if enabled is True and not flag:
            filler.mismatches.append(f"- {section}.enabled=True but {section}=False")
    filler.check()
    return config


def fill_for_training(config: dict, args, max_steps: int, warmup_steps: int, model) -> dict:
    """Fill what is known at ``train()``: schedule lengths and the hidden-size based bucket sizes."""
    filler = ConfigFiller(config)
    filler.fill("scheduler.params.total_num_steps", max_steps, "the run's total steps (max_steps)")
    filler.fill("scheduler.params.warmup_num_steps", warmup_steps, "warmup_steps (or warmup_ratio x max_steps)")
    hidden = _hidden_size(model)
    for key, default in _BUCKET_DEFAULTS.items():
        if hidden is None:
            value = default
        elif key.endswith("reduce_bucket_size"):
            value = hidden * hidden
        elif key.endswith("prefetch_bucket_size"):
            value = int(0.9 * hidden * hidden)
        else:
            value = 10 * hidden
        filler.fill(key, value, "the model's hidden size", must_match=False)
    filler.check()
    left = filler.remaining_auto()
    if left:
        raise ValueError(f"the DeepSpeed config has \"auto\" values the Trainer cannot fill: {left}; set them explicitly")
    return config


def _hidden_size(model) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    sizes = getattr(config, "hidden_sizes", None)
    return int(max(sizes)) if sizes else None


def zero_stage(config: dict) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


def gathers_16bit_weights(config: dict) -> bool:
    zero = config.get("zero_optimization", {})
    return bool(zero.get("stage3_gather_16bit_weights_on_model_save", zero.get("gather_16bit_weights_on_model_save")))


# -- notebooks ----------------------------------------------------------------------------
def setup_single_process_distributed(port: int | None = None) -> dict:
    """Set the environment of a one-process distributed run (for a notebook or plain ``python``).

    DeepSpeed needs ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
    even for one process; values a launcher already set are kept. Returns what was set. The
    Trainer calls it itself when ``deepspeed=`` is given without a launcher; call it first in a
    notebook to choose the port.
    """
    import socket

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    wanted = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
              "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    set_now = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now


# -- weights out of a ZeRO checkpoint -----------------------------------------------------
def load_fp32_weights(checkpoint_dir: str, model: torch.nn.Module | None = None):
    """Full fp32 weights rebuilt from a DeepSpeed checkpoint's partitions (DeepSpeed's zero_to_fp32).

    Returns the state dict, or loads it into ``model`` (strict) and returns the model.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(checkpoint_dir)
    if model is None:
        return state
    model.load_state_dict(state, strict=True)
    return model


# -- the strategy -------------------------------------------------------------------------
class DeepSpeedStrategy(EngineStrategy):
    name = argument = "deepspeed"
    example = "deepspeed='configs/ds_zero2.json'"
    engine_loads_weights = True
    own_mixed_precision = True  # DeepSpeed's fp16 and loss scaler
    owns_optimizer_step = True
    may_skip_steps = True  # an fp16 overflow skips the step
    restores_own_files = True

    @classmethod
    def validate_arguments(cls, args) -> None:
        super().validate_arguments(args)
        load_config(args.deepspeed)

    def __init__(self, args):
        super().__init__(args)
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ImportError("TrainingArguments(deepspeed=...) needs DeepSpeed: pip install 'trainforge[deepspeed]'")
        self.config = fill_from_arguments(load_config(args.deepspeed), args, args.world_size)
        self.stage = zero_stage(self.config)
        self.collective_forward = self.stage == 3
        self.engine = None
        self._boundary = True

    def accelerator_kwargs(self, cuda: bool) -> dict:
        from accelerate.utils import DeepSpeedPlugin

        if "LOCAL_RANK" not in os.environ:  # plain `python script.py` or a notebook: a one-process group
            logger.info("deepspeed= without a launcher: running one process (%s)", setup_single_process_distributed())

        self._plugin = DeepSpeedPlugin(hf_ds_config=self.config)
        # accelerate takes the DeepSpeed path only with cpu=False; on a CPU-only machine it then needs
        # the gloo backend named, or it reports a single process (see runtime.py).
        return {"cpu": False, "deepspeed_plugin": self._plugin, "backend": None if cuda else "gloo"}

    def bind(self, accelerator) -> None:
        super().bind(accelerator)
        if accelerator.device.type == "cpu":
            import atexit

            atexit.register(_remove_shm_buffer)

    def prepare_for_evaluation(self, model):
        return model.to(self.accelerator.device)  # evaluate() before train(): the full model on each process

    def prepare(self, model, optimizer, make_scheduler, max_steps: int, warmup_steps: int):
        """Build the engine; ``make_scheduler(optimizer)`` gives the Trainer's schedule when the config has
        no ``scheduler`` section. Returns ``(engine, optimizer, scheduler)``."""
        from accelerate.utils import DummyOptim, DummyScheduler

        # Recent DeepSpeed (0.19 here) refuses 0 warmup steps in WarmupLR and WarmupDecayLR, which have
        # always run max(2, n) of them: 1 keeps that schedule for runs without warmup instead of failing them.
        warmup_steps = max(1, warmup_steps)

        fill_for_training(self.config, self.args, max_steps, warmup_steps, model)
        # the plugin holds its own copy of the config: give it the values filled just now
        self._plugin.hf_ds_config.config.update(self.config)
        self._plugin.deepspeed_config.update(self.config)
        acc = self.accelerator
        uses_ds_optimizer = "optimizer" in self.config
        uses_ds_scheduler = "scheduler" in self.config
        if uses_ds_optimizer:
            optimizer = DummyOptim([p for p in model.parameters() if p.requires_grad])
        objects = [model, optimizer]
        if uses_ds_scheduler:
            objects.append(DummyScheduler(optimizer, total_num_steps=max_steps, warmup_num_steps=warmup_steps))
        prepared = acc.prepare(*objects)
        engine, optimizer = prepared[0], prepared[1]
        if uses_ds_scheduler:
            scheduler = prepared[2]
        else:  # the Trainer's schedule, on the torch optimizer inside ZeRO's wrapper (its param_groups step)
            scheduler = make_scheduler(getattr(engine, "basic_optimizer", None) or optimizer.optimizer)
        self.engine = engine
        return engine, optimizer, scheduler

    def backward(self, loss: torch.Tensor) -> None:
        # The loss is already divided by the micro-batches of this step; the engine steps at the boundary
        # (the last micro-batch: the others run inside no_sync()).
        self.accelerator.deepspeed_engine_wrapped.backward(loss, sync_gradients=self._boundary, scale_wrt_gas=False)

    def no_sync(self, model):
        return _NoBoundary(self)

    def clip_grad_norm(self, model, optimizer, parameters, max_norm: float) -> torch.Tensor:
        # DeepSpeed clips inside engine.step() (gradient_clipping); report the norm it measured
        norm = self.engine.get_global_grad_norm()
        return torch.tensor(float(norm) if norm is not None else float("nan"))

    def writes_weights_file(self, final: bool = False) -> bool:
        return self.stage < 3 or gathers_16bit_weights(self.config)

    def model_state_dict(self, model, final: bool = False) -> dict | None:
        if self.stage < 3:  # every process holds the full (16-bit when mixed) weights, as views of flat buffers
            return model.module.state_dict()
        if not gathers_16bit_weights(self.config):
            return None
        return self.accelerator.get_state_dict(model)  # collective; the full state on the main process

    def optimizer_state_dict(self, optimizer) -> dict | None:
        return None  # partitions are in the engine's files

    def no_weights_file_note(self, directory: str) -> str:
        return (f"ZeRO-3 weights are partitioned and stage3_gather_16bit_weights_on_model_save is off, so {directory} "
                "gets DeepSpeed's checkpoint files; rebuild full weights with "
                f"integrations.deepspeed.load_fp32_weights({directory!r}) or {directory}/zero_to_fp32.py")

    def save_engine_state(self, directory: str, step: int) -> None:
        self.engine.save_checkpoint(directory, tag=f"global_step{step}")

    def has_engine_state(self, directory: str) -> bool:
        return os.path.isfile(os.path.join(directory, ENGINE_STATE_FILE))

    def load_engine_state(self, directory: str, model, optimizer, load_optimizer: bool = True) -> None:
        path, _ = self.engine.load_checkpoint(
            directory, load_optimizer_states=load_optimizer, load_lr_scheduler_states=load_optimizer,
            load_module_only=not load_optimizer,
        )
        if path is None:
            raise ValueError(f"DeepSpeed could not load the checkpoint in {directory}")


def _remove_shm_buffer() -> None:
    """Delete this process's shared-memory all-reduce buffer (about 69 MB in /dev/shm).

    On the CPU under the ``deepspeed`` launcher (which sets LOCAL_SIZE), DeepSpeed's comm layer
    creates ``deepspeed_allreduce_buffer_{uid}_{addr}_{port}_{rank}`` and never unlinks it.
    """
    name = "deepspeed_allreduce_buffer_{}_{}_{}_{}".format(
        os.getuid(), os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", ""), os.environ.get("RANK", "0"))
    try:
        os.unlink(os.path.join("/dev/shm", name))
    except OSError:
        pass


class _NoBoundary:
    """Micro-batches before the last of a step: the engine accumulates without stepping."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy._boundary = False

    def __exit__(self, *exc):
        self.strategy._boundary = True
        return False


def not_imported_by_save_pretrained() -> None:
    """Keep ``save_pretrained`` from importing DeepSpeed in a run that does not use it.

    transformers' ``save_pretrained`` unwraps the model with accelerate's ``extract_model_from_parallel``,
    which imports DeepSpeed whenever it is installed, only to test ``isinstance(model, DeepSpeedEngine)``:
    1 to 3 s and a warning at the first checkpoint of a run that never asked for DeepSpeed. No model can
    be a ``DeepSpeedEngine`` before ``deepspeed`` is imported, so the availability check it reads is made
    to say so; once a run has imported DeepSpeed, the check is accelerate's own again.
    """
    try:
        import accelerate.utils.other as other  # imported with accelerate itself, which the runtime uses
    except ImportError:
        return
    available = getattr(other, "is_deepspeed_available", None)
    if available is None or getattr(available, "_only_once_imported", False):
        return

    def is_deepspeed_available() -> bool:
        return "deepspeed" in sys.modules and available()

    is_deepspeed_available._only_once_imported = True
    other.is_deepspeed_available = is_deepspeed_available
