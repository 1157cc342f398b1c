"""WandbCallback: the run in Weights & Biases (online, or offline with ``WANDB_MODE=offline``).

| what | where | when |
|---|---|---|
| TrainingArguments + model config (tokens left out) | run config | at train begin |
| every numeric log value, tagged ``train/``, ``eval/``, ``test/`` | history, with ``train/global_step`` as its step | each ``on_log`` |
| the last value of each logged key, ``best_metric``, ``best_global_step`` | run summary | at train end |
| the newest (or best) checkpoint, else the trained weights | artifact ``model-<run id>`` | at train end with ``WANDB_LOG_MODEL=end``; each save with ``checkpoint`` |
| gradients / parameters histograms | ``wandb.watch`` | with ``WANDB_WATCH=gradients``, ``parameters`` or ``all`` |

Environment: ``WANDB_PROJECT`` (default "trainforge"), ``WANDB_MODE`` (``offline`` needs no
network or account), ``WANDB_DIR``, ``WANDB_LOG_MODEL``, ``WANDB_WATCH``. The run name is
``args.run_name``. The run id is saved in each checkpoint (``trainer_state.json``), so a run
resumed from a checkpoint logs into the same W&B run. A hyperparameter-search trial gets a
run of its own, named after the trial and grouped under ``run_name``. Main process only.
"""

from __future__ import annotations

import glob
import logging
import os

from .parallel import chosen_engines
from .reporting import RunTrackerCallback, numeric_logs, rewrite_logs, run_config

logger = logging.getLogger(__name__)

LOG_MODEL_CHOICES = ("false", "end", "checkpoint")
WATCH_CHOICES = ("false", "gradients", "parameters", "all")


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    value = os.getenv(name, "false").lower()
    if value in ("", "0", "no", "none"):
        value = "false"
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose from {list(choices)}")
    return value


class WandbCallback(RunTrackerCallback):
    """Logs to Weights & Biases on the main process (see the module table)."""

    def __init__(self):
        import wandb

        super().__init__()
        self._wandb = wandb
        self._run = None
        self._last: dict = {}
        self.log_model = _env_choice("WANDB_LOG_MODEL", LOG_MODEL_CHOICES)
        self.watch = _env_choice("WANDB_WATCH", WATCH_CHOICES)

    @property
    def run(self):
        return self._run

    @property
    def is_open(self) -> bool:
        return self._run is not None

    def close_run(self) -> None:
        self._run.finish()
        self._run = None

    def open_run(self, args, state, model, trial) -> None:
        init = {"project": os.getenv("WANDB_PROJECT", "trainforge"), "config": run_config(args, model)}
        if os.getenv("WANDB_DIR"):  # read at each run: wandb reads its environment once per process
            init["dir"] = os.environ["WANDB_DIR"]
        if trial is not None:
            init.update(name=trial, group=args.run_name)
        else:
            init["name"] = args.run_name
        if self.run_id is not None:
            init.update(id=self.run_id, resume="allow")
        self._run = self._wandb.init(**init)
        self.run_id = self._run.id
        self._run.define_metric("train/global_step")
        self._run.define_metric("*", step_metric="train/global_step", step_sync=True)
        if self.watch != "false" and model is not None:
            self._run.watch(model, log=self.watch, log_freq=max(1, int(args.logging_steps)))

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.ensure_run(args, state, model)
        values = rewrite_logs(logs, self._warned)
        self._last.update(numeric_logs(logs, self._warned))
        self._run.log({**values, "train/global_step": state.global_step})

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self._run is not None and self.log_model == "checkpoint":
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self._log_model_dir(path, state, aliases=[f"checkpoint-{state.global_step}"])

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or self._run is None:
            return
        summary = dict(self._last)
        if state.best_metric is not None:
            summary.update(best_metric=state.best_metric, best_global_step=state.best_global_step)
        for key, value in summary.items():
            self._run.summary[key] = value
        if self.log_model == "end":
            self._log_final_model(args, state, model)

    def _log_final_model(self, args, state, model) -> None:
        path = state.best_model_checkpoint if args.load_best_model_at_end else None
        if path is None:
            checkpoints = sorted(glob.glob(os.path.join(args.output_dir, "checkpoint-*")),
                                 key=lambda p: int(p.rsplit("-", 1)[-1]) if p.rsplit("-", 1)[-1].isdigit() else -1)
            path = checkpoints[-1] if checkpoints else None
        if path is None:
            if chosen_engines(args):
                logger.warning("WANDB_LOG_MODEL=end: no checkpoint to upload and the sharded model cannot be "
                               "saved from the main process alone; save checkpoints to log the model")
                return
            path = os.path.join(args.output_dir, "wandb-model")
            os.makedirs(path, exist_ok=True)
            _save_weights(model, path)
        self._log_model_dir(path, state, aliases=["end"])

    def _log_model_dir(self, path: str, state, aliases: list[str]) -> None:
        artifact = self._wandb.Artifact(name=f"model-{self._run.id}", type="model",
                                        metadata={"global_step": state.global_step, "best_metric": state.best_metric})
        artifact.add_dir(path)
        self._run.log_artifact(artifact, aliases=aliases)


def _save_weights(model, path: str) -> None:
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(path)
        return
    from safetensors.torch import save_model

    save_model(model, os.path.join(path, "model.safetensors"))
