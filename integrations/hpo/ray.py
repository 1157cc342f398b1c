"""The Ray Tune backend: trials run by Ray workers, with Tune's schedulers and trial checkpoints.

Each trial runs in a Ray worker process: the Trainer (with its ``model_init``, datasets and the
search) is serialized once with ``tune.with_parameters``. At every evaluation the trial reports
``objective`` and the evaluation metrics, with the checkpoint saved at that step when there is
one, so a scheduler can stop the trial (ASHA) or restart it from a checkpoint (PBT): a trial
restored by Ray resumes from that checkpoint exactly. ``hp_space(None)`` returns Tune's
``param_space`` (``tune.loguniform(...)``...).

kwargs: ``scheduler``, ``search_alg``, ``resources_per_trial`` (default ``{"cpu": 1}``),
``storage_path`` (default ``<output_dir>/ray``), ``name``, ``max_concurrent_trials``, and any
``ray.init`` argument under ``ray_init`` (a dict), used when Ray is not running yet.
"""

from __future__ import annotations

import dataclasses
import os


class RayBackend:
    name = "ray"

    @staticmethod
    def default_hp_space(trial=None) -> dict:
        from ray import tune

        return {
            "learning_rate": tune.loguniform(1e-6, 1e-4),
            "num_train_epochs": tune.choice(list(range(1, 6))),
            "seed": tune.randint(1, 41),
            "per_device_train_batch_size": tune.choice([4, 8, 16, 32, 64]),
        }

    @staticmethod
    def trial_id(trial) -> str:
        from ray import tune

        return tune.get_context().get_trial_id() or "0"

    @staticmethod
    def params(trial, hp_space) -> dict:
        return dict(trial)  # Tune has sampled the space into this trial's config

    @staticmethod
    def report(search, trial, objective, step: int) -> None:
        from ray import tune

        trainer = search.trainer
        metrics = {"objective": objective, "global_step": step, "trial_id": RayBackend.trial_id(trial)}
        last = trainer.state.log_history[-1] if trainer.state.log_history else {}
        metrics.update({k: v for k, v in last.items() if isinstance(v, (int, float))})
        checkpoint = None
        path = os.path.join(trainer.args.output_dir, f"checkpoint-{step}")
        if trainer.last_saved_step == step and os.path.isdir(path):
            checkpoint = tune.Checkpoint.from_directory(path)
        tune.report(metrics, checkpoint=checkpoint)

    def run(self, search, n_trials: int, direction, **kwargs):
        import ray
        from ray import tune

        from . import BestRun

        if search.multi_objective:
            raise ValueError("backend='ray' searches one objective: pass one direction, or use backend='optuna'")
        base = search.base_args
        search.base_args = dataclasses.replace(base, output_dir=os.path.abspath(base.output_dir))  # workers chdir
        if not ray.is_initialized():
            ray.init(**{"include_dashboard": False, "log_to_driver": False, **kwargs.pop("ray_init", {})})
        mode = "min" if direction == "minimize" else "max"
        trainable = tune.with_parameters(_run_trial, search=search)
        trainable = tune.with_resources(trainable, kwargs.pop("resources_per_trial", {"cpu": 1}))
        tuner = tune.Tuner(
            trainable,
            param_space=search.hp_space(None),
            tune_config=tune.TuneConfig(
                metric="objective", mode=mode, num_samples=n_trials, scheduler=kwargs.pop("scheduler", None),
                search_alg=kwargs.pop("search_alg", None),
                max_concurrent_trials=kwargs.pop("max_concurrent_trials", None),
            ),
            run_config=tune.RunConfig(
                storage_path=kwargs.pop("storage_path", os.path.join(search.base_args.output_dir, "ray")),
                name=kwargs.pop("name", None), verbose=kwargs.pop("verbose", 0), **kwargs,
            ),
        )
        results = tuner.fit()
        search.results = results
        best = results.get_best_result(metric="objective", mode=mode)
        return BestRun(str(best.metrics.get("trial_id", "0")), best.metrics["objective"], dict(best.config),
                       run_summary=results)


def _run_trial(config, search):
    """A Ray worker's trial: resume from Ray's checkpoint when the trial is restored, train, report."""
    from ray import tune

    trainer = search.trainer
    trainer._search = search
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        objective = search.run_trial(config)
    else:
        with checkpoint.as_directory() as path:
            objective = search.run_trial(config, resume_from_checkpoint=path)
    tune.report({"objective": objective, "done": True, "global_step": trainer.state.global_step,
                 "trial_id": RayBackend.trial_id(config)})
