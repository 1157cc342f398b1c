"""TensorBoardCallback: the run's logs as TensorBoard scalars, and its configuration as text.

| what | tag | when |
|---|---|---|
| every numeric training log value (``loss``, ``learning_rate``, ``grad_norm``, ``epoch``, ``train_runtime``...) | ``train/<key>`` | each ``on_log``, at ``state.global_step`` |
| every evaluation value (``eval_loss``, ``eval_accuracy``, ``eval_runtime``...) | ``eval/<key>`` | each ``on_log`` after an evaluation |
| prediction metrics logged by the user (``test_*``) | ``test/<key>`` | each ``on_log`` |
| the TrainingArguments as JSON | ``args`` (text) | once, at train begin |
| the model's config as JSON | ``model_config`` (text) | once, when the model has one |
| TrainingArguments and model config values | hyperparameters (HPARAMS tab) | once, at train begin |

Event files go to ``args.logging_dir`` (default ``output_dir/runs/<date>_<host>``), in a
``<trial_name>`` subfolder for a hyperparameter-search trial. Only the main process writes.
The writer is flushed after each evaluation and at train end (and closed then, unless it was
given by the user: ``TensorBoardCallback(tb_writer=SummaryWriter(...))``).
"""

from __future__ import annotations

import os

from callbacks import TrainerCallback

from .reporting import rewrite_logs, run_config, scalar_or_text


class TensorBoardCallback(TrainerCallback):
    """Writes scalars, text and hyperparameters for TensorBoard (main process only)."""

    def __init__(self, tb_writer=None):
        self.tb_writer = tb_writer
        self._own_writer = tb_writer is None
        self._log_dir = None
        self._warned: set = set()
        self._config_written = False

    def _open(self, log_dir: str) -> None:
        if not self._own_writer:
            return
        if self.tb_writer is not None and self._log_dir == log_dir:
            return
        from torch.utils.tensorboard import SummaryWriter

        if self.tb_writer is not None:
            self.tb_writer.close()
        self.tb_writer = SummaryWriter(log_dir=log_dir)
        self._log_dir = log_dir
        self._config_written = False

    def _write_config(self, args, model) -> None:
        if self._config_written:
            return
        self._config_written = True
        self.tb_writer.add_text("args", f"```json\n{args.to_json_string()}\n```")
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_json_string"):
            self.tb_writer.add_text("model_config", f"```json\n{model_config.to_json_string()}\n```")
        from torch.utils.tensorboard.summary import hparams

        values = {k: scalar_or_text(v) for k, v in run_config(args, model).items()}
        writer = self.tb_writer._get_file_writer()
        for summary in hparams(values, metric_dict={}):  # in this event file, not a new subfolder
            writer.add_summary(summary)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        log_dir = args.logging_dir
        if state.is_hyper_param_search and state.trial_name:
            log_dir = os.path.join(log_dir, state.trial_name)
        self._open(log_dir)
        self._write_config(args, model)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.tb_writer is None:  # evaluate()/predict() without train()
            self._open(args.logging_dir)
        for tag, value in rewrite_logs(logs, self._warned).items():
            self.tb_writer.add_scalar(tag, value, state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.tb_writer is not None:
            self.tb_writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.tb_writer is None:
            return
        self.tb_writer.flush()
        if self._own_writer:
            self.tb_writer.close()
            self.tb_writer = None
            self._log_dir = None

