"""MLflowCallback: the run in MLflow, with any tracking store (a local ``sqlite:///`` or ``file:``
store works with no server and no network).

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

from callbacks import ExportableState, TrainerCallback

from .reporting import numeric_logs, run_config

_PARAMS_PER_CALL = 100


def _flag(name: str) -> bool:
    return os.getenv(name, "false").lower() in ("1", "true", "yes")


class MLflowCallback(TrainerCallback, ExportableState):
    """Logs params and metrics to MLflow on the main process (see the module table)."""

    def __init__(self):
        import mlflow

        self._mlflow = mlflow
        self.run_id = None  # restored from a checkpoint
        self._started = False
        self._trial = None
        self._warned: set = set()

    def state(self) -> dict:
        return {"args": {}, "attributes": {"run_id": self.run_id}}

    def setup(self, args, state, model) -> None:
        mlflow = self._mlflow
        trial = state.trial_name if state.is_hyper_param_search else None
        if self._started and trial == self._trial:
            return
        if self._started:  # a new trial while the previous trial's run is open
            mlflow.end_run()
        if trial is not None and trial != self._trial:
            self.run_id = None  # a new trial: a new run (a saved id belongs to the run being resumed)
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
        self._trial = trial
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

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.setup(args, state, model)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if not self._started:
            self.setup(args, state, model)
        metrics = numeric_logs(logs, self._warned)
        if metrics:
            self._mlflow.log_metrics(metrics, step=state.global_step, run_id=self.run_id)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self._started:
            return
        if _flag("HF_MLFLOW_LOG_ARTIFACTS") and os.path.isdir(args.output_dir):
            self._mlflow.log_artifacts(args.output_dir, run_id=self.run_id)
        self._mlflow.end_run()  # a trial's run; the search's parent run stays active for the next trial
        self._started = False
