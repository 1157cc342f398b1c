"""The optuna backend: a study (any sampler and pruner, optional RDB storage), trials pruned at evaluations.

With ``storage`` (e.g. ``"sqlite:///search.db"``) and ``study_name`` the search survives a crash:
re-running the same ``hyperparameter_search`` call loads the study, marks the trials left
running by a process of this machine that no longer exists as failed, runs their
hyperparameters again first, and runs only the trials still missing, so the study ends with
``n_trials`` finished (complete or pruned) trials. The sampler of a resumed study is reseeded, so
that a seeded sampler does not replay the values of the trials already run.
"""

from __future__ import annotations

import os
import socket

_WORKER_ATTR = "trainforge_worker"  # "host:pid" of the process running a trial


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OptunaBackend:
    name = "optuna"

    @staticmethod
    def default_hp_space(trial) -> dict:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-6, 1e-4, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", 1, 5),
            "seed": trial.suggest_int("seed", 1, 40),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [4, 8, 16, 32, 64]),
        }

    @staticmethod
    def trial_id(trial) -> str:
        return str(trial.number)

    @staticmethod
    def params(trial, hp_space) -> dict:
        trial.set_user_attr(_WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        return dict(hp_space(trial))

    @staticmethod
    def report(search, trial, objective, step: int) -> None:
        import optuna

        if search.multi_objective:  # optuna prunes single-objective studies only
            return
        trial.report(objective, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (objective {objective:.6g})")

    def run(self, search, n_trials: int, direction, **kwargs):
        import optuna

        from . import BestRun

        multi = search.multi_objective
        study = optuna.create_study(
            storage=kwargs.pop("storage", None),
            study_name=kwargs.pop("study_name", None),
            sampler=kwargs.pop("sampler", None),
            pruner=kwargs.pop("pruner", None),
            load_if_exists=True,
            **({"directions": list(direction)} if multi else {"direction": direction}),
        )
        if study.trials:  # a resumed study: a seeded sampler would otherwise replay the values already tried
            study.sampler.reseed_rng()
        _retry_abandoned_trials(study)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        remaining = n_trials - len(study.get_trials(deepcopy=False, states=finished))
        if remaining > 0:
            study.optimize(search.run_trial, n_trials=remaining, timeout=kwargs.pop("timeout", None),
                           gc_after_trial=kwargs.pop("gc_after_trial", False),
                           callbacks=kwargs.pop("callbacks", None), catch=kwargs.pop("catch", ()), **kwargs)
        search.study = study
        if multi:
            return [BestRun(str(t.number), list(t.values), dict(t.params), run_summary=study) for t in study.best_trials]
        best = study.best_trial
        return BestRun(str(best.number), best.value, dict(best.params), run_summary=study)


def _retry_abandoned_trials(study) -> None:
    """Trials left RUNNING by a dead process of this machine: marked failed, their values queued again."""
    import optuna

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get(_WORKER_ATTR, "")
        worker_host, _, pid = worker.rpartition(":")
        if worker_host != host or not pid.isdigit() or _alive(int(pid)):
            continue  # another machine's trial, or a live one: not ours to judge
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
