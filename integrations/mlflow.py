"""MLflowCallback: the run in MLflow, with any tracking store (a local ``sqlite:///`` store works
with no server and no network; MLflow 3 accepts ``file:`` stores only with ``MLFLOW_ALLOW_FILE_STORE=true``).

| what | where | when |
|---|---|---|
| TrainingArguments + model config (tokens left out; values cut to MLflow's length limit) | run params | at train begin (not again when resuming the same run) |
| every numeric log value, under its log key (``loss``, ``eval_loss``...) | metrics at ``step=global_step`` | each ``on_log`` |
| ``args.output_dir`` (checkpoints, final model) | run artifacts | at train end with ``HF_MLFLOW_LOG_ARTIFACTS=1`` |

Environment: ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME`` (default "trainforge"),
``MLFLOW_RUN_ID`` (log into an existing run), ``MLFLOW_TAGS`` (a JSON object of tags),
``MLFLOW_NESTED_RUN`` (start inside the active run). The run name is ``args.run_name``. The
run id is saved in each checkpoint, so a resumed run continues the same MLflow run. A
hyperparameter-search trial gets its own run, nested in the search's. The run this callback
started is ended at train end. Main process only.
"""

from __future__ import annotations

import json
import os

from .reporting import RunTrackerCallback, numeric_logs, run_config

_PARAMS_PER_CALL = 100


def _flag(name: str) -> bool:
    return os.getenv(name, "false").lower() in ("1", "true", "yes")


class MLflowCallback(RunTrackerCallback):
    """Logs params and metrics to MLflow on the main process (see the module table)."""

    def __init__(self):
        import mlflow

        super().__init__()
        self._mlflow = mlflow
        self._started = False

    @property
    def is_open(self) -> bool:
        return self._started

    def close_run(self) -> None:
        self._mlflow.end_run()
        self._started = False

    def open_run(self, args, state, model, trial) -> None:
        mlflow = self._mlflow
        uri = os.getenv("MLFLOW_TRACKING_URI")
        if uri:
            mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(os.getenv("MLFLOW_EXPERIMENT_NAME", "trainforge"))
        run_id = self.run_id or os.getenv("MLFLOW_RUN_ID")
        nested = trial is not None or _flag("MLFLOW_NESTED_RUN")
        if trial is not None and mlflow.active_run() is None:  # the search's parent run
            mlflow.start_run(run_name=args.run_name)
        resumed = run_id is not None
        if resumed:
            run = mlflow.start_run(run_id=run_id, nested=nested)
        else:
            run = mlflow.start_run(run_name=trial or args.run_name, nested=nested)
        self.run_id = run.info.run_id
        self._started = True
        tags = os.getenv("MLFLOW_TAGS")
        if tags:
            mlflow.set_tags(json.loads(tags))
        if not resumed:
            self._log_params(args, model)

    def _log_params(self, args, model) -> None:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        params = {k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in run_config(args, model).items()}
        items = list(params.items())
        for i in range(0, len(items), _PARAMS_PER_CALL):
            self._mlflow.log_params(dict(items[i : i + _PARAMS_PER_CALL]))

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.ensure_run(args, state, model)
        metrics = numeric_logs(logs, self._warned)
        if metrics:
            self._mlflow.log_metrics(metrics, step=state.global_step, run_id=self.run_id)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self._started:
            return
        if _flag("HF_MLFLOW_LOG_ARTIFACTS") and os.path.isdir(args.output_dir):
            self._mlflow.log_artifacts(args.output_dir, run_id=self.run_id)
        self.close_run()  # a trial's run; the search's parent run stays active for the next trial
