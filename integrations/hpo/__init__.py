"""Hyperparameter-search backends behind ``Trainer.hyperparameter_search``.

| backend | package | chosen | what it adds |
|---|---|---|---|
| ``optuna`` | ``optuna`` | first, when installed | any sampler; ``storage=``/``study_name=`` (e.g. ``"sqlite:///search.db"``) so a search survives a crash and resumes by re-running the same call; the objective reported at every evaluation and trials pruned by the study's pruner; several directions (multi-objective) |
| ``ray`` | ``ray[tune]`` | when optuna is not installed | Ray Tune's schedulers (ASHA, PBT...) and its checkpointing of trials |

A backend is an object with ``name``, ``default_hp_space(trial)``, ``trial_id(trial)``,
``params(trial, hp_space)``, ``report(search, trial, objective, step)`` and
``run(search, n_trials, direction, **kwargs)``.
Each module imports its library only when the search runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, NamedTuple

# name -> (module that must be importable, pip package, "module:Class"), in order of preference
HPO_BACKENDS: dict[str, tuple[str, str, str]] = {
    "optuna": ("optuna", "optuna", "integrations.hpo.optuna:OptunaBackend"),
    "ray": ("ray.tune", "ray[tune]", "integrations.hpo.ray:RayBackend"),
}


class BestRun(NamedTuple):
    """The best trial of a search: its id, objective (a list for several directions), hyperparameters."""

    run_id: str
    objective: float | list[float]
    hyperparameters: dict[str, Any]
    run_summary: Any = None


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it: ``find_spec("ray.tune")`` would import
    ``ray`` (a quarter second), so a submodule is looked for in its package's directories."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not rest:
        return spec is not None
    parts = rest.split(".")
    for location in spec.submodule_search_locations or ():
        path = os.path.join(location, *parts)
        if os.path.isdir(path) or os.path.isfile(path + ".py"):
            return True
    return False


def choose_backend(name: str | None):
    """The backend instance for ``name``; ``None``: the first installed one, in the table's order."""
    if name is None:
        name = next((n for n, (module, _, _) in HPO_BACKENDS.items() if is_installed(module)), None)
        if name is None:
            raise ImportError(
                "hyperparameter_search needs a search library and none is installed: pip install optuna "
                "(or pip install 'ray[tune]' for backend='ray')"
            )
    if name not in HPO_BACKENDS:
        raise ValueError(f"backend={name!r} is not a search backend; choose from {list(HPO_BACKENDS)}")
    module, package, target = HPO_BACKENDS[name]
    if not is_installed(module):
        raise ImportError(f"backend={name!r} needs the {package!r} package: pip install '{package}'")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def default_compute_objective(metrics: dict[str, float]) -> float:
    """The evaluation loss when it is the only metric, else the sum of the metrics (speed and epoch left out)."""
    metrics = {k: v for k, v in metrics.items()
               if k != "epoch" and not k.endswith(("_runtime", "_per_second")) and "_mem_" not in k}
    loss = metrics.pop("eval_loss", None)
    return loss if not metrics else float(sum(metrics.values()))
