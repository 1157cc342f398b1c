"""Hyperparameter search: optuna (pruning, sqlite storage surviving a kill, several objectives) and Ray Tune."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap

import pytest

from tests.fixtures import RegressionDataset, RegressionModel, regression_args
from tests.processes import run
from trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_trainer(tmp_path, **overrides):
    """The regression fixture: y = 2x + 3 learned from a=b=0 in 16 steps, evaluated every 4."""
    values = dict(eval_strategy="steps", eval_steps=4, num_train_epochs=2, logging_steps=4, max_grad_norm=None)
    values.update(overrides)
    return Trainer(model_init=RegressionModel, args=regression_args(tmp_path, **values),
                   train_dataset=RegressionDataset(64), eval_dataset=RegressionDataset(32, seed=7))


def lr_space(trial) -> dict:
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 10.0, log=True)}


# -- optuna ---------------------------------------------------------------------------------------
def test_optuna_finds_the_optimum_region_and_prunes(tmp_path):
    optuna = pytest.importorskip("optuna")
    trainer = search_trainer(tmp_path)
    best = trainer.hyperparameter_search(
        hp_space=lr_space, n_trials=6, sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    study = best.run_summary
    states = [t.state for t in study.trials]
    assert len(states) == 6 and states.count(optuna.trial.TrialState.PRUNED) >= 1
    # the known optimum region: learning rates that bring y = ax + b to 2x + 3 in 16 steps (eval loss < 0.5,
    # where lr <= 0.05 stays above 5)
    assert best.objective < 0.5 and 0.1 < best.hyperparameters["learning_rate"] < 5.0
    assert study.best_trial.intermediate_values[16] == best.objective  # reported at every evaluation
    assert trainer.args.learning_rate == 0.1 and trainer.args.output_dir == str(tmp_path / "out")  # restored
    # the best trial is reproducible: training again with its learning rate gives its objective exactly
    again = search_trainer(tmp_path / "again", learning_rate=best.hyperparameters["learning_rate"])
    again.train()
    assert again.evaluate()["eval_loss"] == best.objective


def test_trials_set_the_state_and_rebuild_model_and_optimizer(tmp_path):
    pytest.importorskip("optuna")
    from trainer import TrainerCallback

    seen = []

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            seen.append((state.is_hyper_param_search, state.trial_name, dict(state.trial_params), args.output_dir,
                         args.per_device_train_batch_size, float(model.a.detach()), id(model), id(optimizer)))

    trainer = search_trainer(tmp_path)
    trainer.add_callback(Record())
    trainer.hyperparameter_search(
        hp_space=lambda t: {"per_device_train_batch_size": t.suggest_categorical("per_device_train_batch_size", [4, 16]),
                            "weight_decay": t.suggest_float("weight_decay", 0.0, 0.1)},
        n_trials=2, hp_name=lambda t: f"trial-{t.number}")
    assert [s[:2] for s in seen] == [(True, "trial-0"), (True, "trial-1")]
    assert [s[3] for s in seen] == [str(tmp_path / "out" / "run-0"), str(tmp_path / "out" / "run-1")]
    assert all(s[4] == s[2]["per_device_train_batch_size"] for s in seen)  # applied to the arguments
    assert all(s[5] == 0.0 for s in seen)  # a fresh model each trial (the previous one was trained)
    assert seen[0][6] != seen[1][6] and seen[0][7] != seen[1][7]
    assert not trainer.state.is_hyper_param_search or trainer.state.trial_name == "trial-1"


KILLED_SEARCH = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import optuna
    from tests.fixtures import RegressionDataset, RegressionModel, regression_args
    from trainer import Trainer, TrainerCallback
    from pathlib import Path

    class KillAtTrial(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if os.environ.get("KILL_TRIAL") == state.trial_name and state.global_step == 6:
                os.kill(os.getpid(), signal.SIGKILL)

    args = regression_args(Path(sys.argv[1]), eval_strategy="steps", eval_steps=4, num_train_epochs=2,
                           max_grad_norm=None)
    trainer = Trainer(model_init=RegressionModel, args=args, train_dataset=RegressionDataset(64),
                      eval_dataset=RegressionDataset(32, seed=7), callbacks=[KillAtTrial()])
    trainer.hyperparameter_search(
        hp_space=lambda t: {{"learning_rate": t.suggest_float("learning_rate", 1e-3, 1.0, log=True)}},
        n_trials=6, storage="sqlite:///" + sys.argv[2], study_name="killed", pruner=optuna.pruners.NopPruner(),
        sampler=optuna.samplers.RandomSampler(seed=1))
""")


def test_optuna_sqlite_search_survives_a_kill_and_resumes(tmp_path):
    optuna = pytest.importorskip("optuna")
    script = tmp_path / "search.py"
    script.write_text(KILLED_SEARCH.format(root=ROOT))
    db = tmp_path / "search.db"
    cmd = [sys.executable, str(script), str(tmp_path), str(db)]
    killed = run(cmd, timeout=240, env={**os.environ, "KILL_TRIAL": "run-2"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]
    killed_params = study.trials[2].params

    resumed = run(cmd, timeout=240, env={k: v for k, v in os.environ.items() if k != "KILL_TRIAL"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 6 and states == ["COMPLETE", "COMPLETE", "FAIL"] + ["COMPLETE"] * 4
    retried = study.trials[3]
    assert retried.params == killed_params and retried.user_attrs["retry_of"] == 2  # not lost: run again first
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len({t.number for t in finished}) == 6 and len({t.params["learning_rate"] for t in finished}) == 6


def test_optuna_multi_objective_returns_the_pareto_front(tmp_path):
    optuna = pytest.importorskip("optuna")
    import numpy as np

    trainer = search_trainer(tmp_path)
    trainer.compute_metrics = lambda p: {"max_error": float(np.abs(p.predictions - p.label_ids).max())}
    best = trainer.hyperparameter_search(
        hp_space=lr_space, n_trials=4, direction=["minimize", "minimize"],
        compute_objective=lambda m: [m["eval_loss"], m["eval_max_error"]], sampler=optuna.samplers.TPESampler(seed=0))
    assert isinstance(best, list) and best
    study = best[0].run_summary
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2 and len(study.trials) == 4
    front = [b.objective for b in best]
    assert all(len(o) == 2 and o[0] > 0 and o[1] > 0 for o in front)
    others = [t.values for t in study.trials if t.number not in {int(b.run_id) for b in best}]
    for values in others:  # every trial off the front is dominated by one on it
        assert any(f[0] <= values[0] and f[1] <= values[1] for f in front)


# -- Ray Tune -------------------------------------------------------------------------------------
def test_ray_tune_two_trials_with_a_scheduler_and_checkpoints(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray[tune] is not installed (pip install 'ray[tune]')")
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    trainer = search_trainer(tmp_path, save_strategy="steps", save_steps=4)
    best = trainer.hyperparameter_search(
        hp_space=lambda _: {"learning_rate": tune.grid_search([0.01, 0.3])}, n_trials=1, backend="ray",
        scheduler=FIFOScheduler(), ray_init={"num_cpus": 2}, resources_per_trial={"cpu": 1})
    results = best.run_summary
    assert len(results) == 2 and not results.errors
    assert best.hyperparameters == {"learning_rate": 0.3} and best.objective < 1.0
    worse = next(r for r in results if r.config["learning_rate"] == 0.01)
    assert worse.metrics["objective"] > best.objective
    best_result = results.get_best_result()
    assert best_result.checkpoint is not None  # trial checkpoints reported to Tune
    with best_result.checkpoint.as_directory() as path:
        assert os.path.exists(os.path.join(path, "model.safetensors"))


# -- bad input ------------------------------------------------------------------------------------
def test_search_needs_model_init(tmp_path):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path), train_dataset=RegressionDataset(16))
    with pytest.raises(RuntimeError, match="hyperparameter_search needs a Trainer built with model_init=..."):
        trainer.hyperparameter_search(n_trials=1)


def test_unknown_and_mistyped_hyperparameters_are_refused(tmp_path):
    pytest.importorskip("optuna")
    trainer = search_trainer(tmp_path)
    with pytest.raises(ValueError, match="the hp space returned 'learning_rat' .did you mean 'learning_rate'.., which "
                                         "is not a TrainingArguments field"):
        trainer.hyperparameter_search(hp_space=lambda t: {"learning_rat": 0.1}, n_trials=1)
    with pytest.raises(TypeError, match="the hp space gave per_device_train_batch_size=2.5 .float., but "
                                        "per_device_train_batch_size takes a int like its current value 8"):
        trainer.hyperparameter_search(hp_space=lambda t: {"per_device_train_batch_size": 2.5}, n_trials=1)
    assert trainer.args.output_dir == str(tmp_path / "out")


def test_backend_choice_and_missing_packages(tmp_path, monkeypatch):
    trainer = search_trainer(tmp_path)
    with pytest.raises(ValueError, match=r"backend='hyperopt' is not a search backend; choose from \['optuna', 'ray'\]"):
        trainer.hyperparameter_search(backend="hyperopt", n_trials=1)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match="backend='optuna' needs the 'optuna' package: pip install 'optuna'"):
        trainer.hyperparameter_search(backend="optuna", n_trials=1)
    with pytest.raises(ImportError, match="hyperparameter_search needs a search library and none is installed: pip "
                                          "install optuna"):
        trainer.hyperparameter_search(n_trials=1)


def test_default_space_and_objective(tmp_path):
    pytest.importorskip("optuna")
    from integrations.hpo import default_compute_objective

    assert default_compute_objective({"eval_loss": 0.5, "eval_runtime": 3.0, "epoch": 2.0}) == 0.5
    assert default_compute_objective({"eval_loss": 0.5, "eval_f1": 0.25, "eval_accuracy": 0.5,
                                      "eval_samples_per_second": 9.0}) == 0.75
    trainer = search_trainer(tmp_path)
    best = trainer.hyperparameter_search(n_trials=1)
    assert set(best.hyperparameters) == {"learning_rate", "num_train_epochs", "seed", "per_device_train_batch_size"}
    assert 1e-6 <= best.hyperparameters["learning_rate"] <= 1e-4
