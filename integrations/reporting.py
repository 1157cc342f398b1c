"""Resolution of ``TrainingArguments.report_to`` into logging-backend callbacks, and what the
backends share: the log-key rewriting and the run configuration they record.

A backend is listed by name with the package it needs and the ``module:Class`` of its
callback. The callback module is imported only when a run reports to it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import numbers
import os

from callbacks import (
    DefaultFlowCallback,
    ExportableState,
    NotebookProgressCallback,
    PrinterCallback,
    ProfilerCallback,
    ProgressCallback,
    TrainerCallback,
    in_notebook,
)

logger = logging.getLogger(__name__)

# name -> (module that must be importable, pip package that provides it, "module:CallbackClass").
# The first three are ours; the others are transformers' own integration callbacks, which run on this callback
# bus unchanged (they need transformers installed beside the backend's package).
_HF = "transformers.integrations.integration_utils:"
REPORTING_INTEGRATIONS: dict[str, tuple[str, str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard", "integrations.tensorboard:TensorBoardCallback"),
    "wandb": ("wandb", "wandb", "integrations.wandb:WandbCallback"),
    "mlflow": ("mlflow", "mlflow", "integrations.mlflow:MLflowCallback"),
    "azure_ml": ("azureml.core.run", "azureml-core", _HF + "AzureMLCallback"),
    "clearml": ("clearml", "clearml", _HF + "ClearMLCallback"),
    "codecarbon": ("codecarbon", "codecarbon", _HF + "CodeCarbonCallback"),
    "comet_ml": ("comet_ml", "comet-ml", _HF + "CometCallback"),
    "dagshub": ("dagshub", "dagshub", _HF + "DagsHubCallback"),
    "dvclive": ("dvclive", "dvclive", _HF + "DVCLiveCallback"),
    "flyte": ("flytekit", "flytekit", _HF + "FlyteCallback"),
    "kubeflow": ("transformers", "transformers", _HF + "KubeflowCallback"),  # talks to the server of its env vars
    "neptune": ("neptune", "neptune", _HF + "NeptuneCallback"),
    "swanlab": ("swanlab", "swanlab", _HF + "SwanLabCallback"),
    "trackio": ("trackio", "trackio", _HF + "TrackioCallback"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _available(name: str) -> bool:
    """Whether ``report_to="all"`` includes backend ``name``: its package is installed (and transformers, for the
    backends whose callback is transformers'); kubeflow only inside a Kubeflow TrainJob, as transformers decides."""
    module, _, target = REPORTING_INTEGRATIONS[name]
    if name == "kubeflow":
        return _installed("transformers") and bool(os.environ.get("KUBEFLOW_TRAINER_SERVER_URL"))
    return _installed(module) and (not target.startswith(_HF) or _installed("transformers"))


def resolve_report_to(report_to) -> list[str]:
    """Normalize ``report_to`` ("none", "all", a name or a list) into a list of backend names.

    "all" means every backend whose package is installed. Raises ValueError naming unknown
    backends and the valid ones.
    """
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return [name for name in REPORTING_INTEGRATIONS if _available(name)]
    unknown = [n for n in names if n not in REPORTING_INTEGRATIONS]
    if unknown:
        valid = ", ".join(["none", "all", *REPORTING_INTEGRATIONS])
        raise ValueError(f"report_to={report_to!r}: unknown backend(s) {unknown}; choose from: {valid}")
    return names


def default_callbacks(args) -> list:
    """The callbacks every Trainer starts with: the flow of log/evaluate/save decisions, a progress display
    (a bar in a terminal or a notebook, plain log lines with ``disable_tqdm``), the profiler when asked,
    then the logging backends of ``report_to``."""
    if args.disable_tqdm:
        progress = PrinterCallback
    else:
        progress = NotebookProgressCallback if in_notebook() else ProgressCallback
    default = [DefaultFlowCallback, progress] + ([ProfilerCallback] if args.profile else [])
    return default + reporting_callbacks(args.report_to)


def reporting_callbacks(report_to) -> list:
    """Callback classes for the resolved ``report_to`` backends, imported lazily."""
    classes = []
    for name in resolve_report_to(report_to):
        module, package, target = REPORTING_INTEGRATIONS[name]
        hosted = target.startswith(_HF)
        needed = {module: package, **({"transformers": "transformers"} if hosted else {})}
        missing = [package for module, package in needed.items() if not _installed(module)]
        if missing:
            how = f" (its callback is transformers' {target.split(':')[1]})" if hosted else ""
            which = " and ".join(repr(p) for p in missing) + (" package is" if len(missing) == 1 else " packages are")
            raise ImportError(f"report_to includes {name!r}{how} but the {which} not installed: "
                              f"pip install {' '.join(missing)} (or remove {name!r} from report_to)")
        module_name, class_name = target.split(":")
        classes.append(getattr(importlib.import_module(module_name), class_name))
    return classes


# -- shared by the backends -------------------------------------------------------------
_SPLITS = ("eval", "test")


def numeric_logs(logs: dict, warned: set) -> dict[str, float]:
    """The numeric values of ``logs`` (floats); other values are skipped with one warning per key."""
    out = {}
    for key, value in logs.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
            value = value.item()
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            out[key] = float(value)
        elif key not in warned:
            warned.add(key)
            logger.warning("%r=%r is not a number: the logging backends skip it", key, value)
    return out


def rewrite_logs(logs: dict, warned: set) -> dict[str, float]:
    """Numeric logs with split tags: ``eval_loss`` -> ``eval/loss``, ``test_x`` -> ``test/x``, else ``train/...``."""
    out = {}
    for key, value in numeric_logs(logs, warned).items():
        split, _, rest = key.partition("_")
        out[f"{split}/{rest}" if split in _SPLITS and rest else f"train/{key}"] = value
    return out


def run_config(args, model=None) -> dict:
    """What a backend records as the run's configuration: the model's config when it has one
    (``transformers`` models) merged with the TrainingArguments (which win a shared key), tokens
    and other secrets left out."""
    config = {k: v for k, v in args.to_dict().items() if not _secret(k)}
    model_config = getattr(model, "config", None)
    if model_config is not None and hasattr(model_config, "to_dict"):
        config = {**{k: v for k, v in model_config.to_dict().items() if not _secret(k)}, **config}  # args win
    return config


def _secret(key: str) -> bool:
    return key.endswith("_token") or "password" in key or "secret" in key


def scalar_or_text(value):
    """A value hyperparameter tables take as is (int, float, str, bool), else its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class RunTrackerCallback(TrainerCallback, ExportableState):
    """Base of the backends that keep a run on a tracking server (W&B, MLflow).

    The run id is saved in checkpoints (ExportableState), so a resumed training continues the
    same run; a hyperparameter-search trial gets a run of its own. Subclasses implement
    ``is_open`` and ``open_run(args, state, model, trial)``, which sets ``run_id``, and
    log in ``on_log`` after ``ensure_run``. Main process only.
    """

    def __init__(self):
        self.run_id = None  # restored from a checkpoint before on_train_begin
        self._trial = None
        self._warned: set = set()

    def state(self) -> dict:
        return {"args": {}, "attributes": {"run_id": self.run_id}}

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def open_run(self, args, state, model, trial: str | None) -> None:
        raise NotImplementedError

    def close_run(self) -> None:
        """Close the open run (before a new trial's)."""

    def setup(self, args, state, model) -> None:
        trial = state.trial_name if state.is_hyper_param_search else None
        if self.is_open and trial == self._trial:
            return
        if self.is_open:  # a new trial while the previous trial's run is open
            self.close_run()
        if trial is not None and trial != self._trial:
            self.run_id = None  # a new trial: a new run (a saved id belongs to the run being resumed)
        self.open_run(args, state, model, trial)
        self._trial = trial

    def ensure_run(self, args, state, model) -> None:
        if not self.is_open:  # evaluate()/predict() without train()
            self.setup(args, state, model)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.setup(args, state, model)
