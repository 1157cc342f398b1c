"""Logging backends and progress display: what each backend wrote, read back from its own files."""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os

import pytest
import torch

from tests.fixtures import RegressionDataset, RegressionModel, regression_args
from trainer import Trainer


def numeric_history(trainer) -> list[dict]:
    """log_history without the step key, numbers only."""
    return [{k: v for k, v in h.items() if k != "step" and isinstance(v, (int, float))} | {"step": h["step"]}
            for h in trainer.state.log_history]


def tag_of(key: str) -> str:
    split, _, rest = key.partition("_")
    return f"{split}/{rest}" if split in ("eval", "test") else f"train/{key}"


def with_config(model):
    """A plain model with a transformers-like config (to_dict / to_json_string)."""
    transformers = pytest.importorskip("transformers")
    model.config = transformers.PretrainedConfig(hidden_size=7, note="tiny")
    return model


def logging_run(tmp_path, report_to, **overrides):
    values = dict(report_to=report_to, logging_steps=2, eval_strategy="steps", eval_steps=4, save_strategy="steps",
                  save_steps=4, num_train_epochs=2, logging_dir=str(tmp_path / "tb"))
    values.update(overrides)
    return Trainer(with_config(RegressionModel()), regression_args(tmp_path, **values),
                   train_dataset=RegressionDataset(32), eval_dataset=RegressionDataset(16))


# -- report_to ----------------------------------------------------------------------------------
def test_report_to_names_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"report_to=\['tensorbord'\]: unknown backend\(s\) \['tensorbord'\]; "
                                         "choose from: none, all, tensorboard, wandb, mlflow"):
        regression_args(tmp_path, report_to=["tensorbord"])
    assert regression_args(tmp_path).report_to == []  # the default "none": no surprise logins
    assert regression_args(tmp_path, report_to="tensorboard,mlflow").report_to == ["tensorboard", "mlflow"]


def test_report_to_a_backend_not_installed_says_what_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ImportError, match="report_to includes 'wandb' but the 'wandb' package is not installed: "
                                          "pip install wandb"):
        Trainer(RegressionModel(), regression_args(tmp_path, report_to="wandb"))
    from integrations.reporting import resolve_report_to

    assert "wandb" not in resolve_report_to("all")  # 'all': the installed ones


def test_report_to_every_transformers_backend_name_with_its_package_named_when_missing(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from integrations.reporting import REPORTING_INTEGRATIONS

    assert set(REPORTING_INTEGRATIONS) == set(INTEGRATION_TO_CALLBACK)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "neptune" else real(name, *a))
    with pytest.raises(ImportError, match="report_to includes 'neptune' \\(its callback is transformers' "
                                          "NeptuneCallback\\) but the 'neptune' package is not installed: "
                                          "pip install neptune"):
        Trainer(RegressionModel(), regression_args(tmp_path, report_to=["neptune"]))


def test_dvclive_through_transformers_callback_holds_the_logged_history(tmp_path, monkeypatch):
    """report_to='dvclive' runs transformers' DVCLiveCallback unchanged; its files hold our log_history."""
    pytest.importorskip("transformers")
    pytest.importorskip("dvclive")
    monkeypatch.chdir(tmp_path)  # dvclive writes ./dvclive (outside a git repo: no experiment is saved)
    trainer = logging_run(tmp_path, "dvclive")
    assert "DVCLiveCallback" in trainer.callback_handler.callback_list
    trainer.train()
    rows = (tmp_path / "dvclive" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "loss"]
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert [float(r.split("\t")[1]) for r in rows[1:]] == pytest.approx(logged, rel=1e-6)
    evals = (tmp_path / "dvclive" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().splitlines()[1:]
    assert [float(r.split("\t")[1]) for r in evals] == pytest.approx(
        [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h], rel=1e-6)
    params = (tmp_path / "dvclive" / "params.yaml").read_text()
    assert "learning_rate: 0.1" in params and "logging_steps: 2" in params  # our TrainingArguments.to_dict()


def test_codecarbon_through_transformers_callback_writes_the_emissions_of_the_run(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("codecarbon")
    monkeypatch.setenv("CODECARBON_LOG_LEVEL", "error")
    trainer = logging_run(tmp_path, ["codecarbon"])  # its tracker starts in on_init_end, in output_dir
    trainer.train()
    import csv

    with open(tmp_path / "out" / "emissions.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["duration"]) > 0 and float(row["energy_consumed"]) >= 0


# -- TensorBoard --------------------------------------------------------------------------------
def test_tensorboard_event_files_hold_log_history(tmp_path):
    pytest.importorskip("tensorboard")
    from tests.backend_files import tensorboard_hparams, tensorboard_scalars, tensorboard_texts

    trainer = logging_run(tmp_path, "tensorboard")
    trainer.train()
    scalars = tensorboard_scalars(str(tmp_path / "tb"))
    expected: dict[str, list] = {}
    for entry in numeric_history(trainer):
        for key, value in entry.items():
            if key != "step":
                expected.setdefault(tag_of(key), []).append((entry["step"], value))
    assert set(scalars) == set(expected)
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "eval/loss", "eval/runtime",
            "train/train_runtime", "train/total_flos"} <= set(scalars)
    for tag, points in expected.items():
        assert [s for s, _ in scalars[tag]] == [s for s, _ in points], tag
        for (_, got), (_, want) in zip(scalars[tag], points):
            assert got == pytest.approx(want, rel=1e-6), tag  # float32 in the event file
    assert [s for s, _ in scalars["train/loss"]] == [2, 4, 6, 8] and [s for s, _ in scalars["eval/loss"]] == [4, 8]
    texts = tensorboard_texts(str(tmp_path / "tb"))
    assert json.loads(texts["args"].strip("`").removeprefix("json"))["learning_rate"] == 0.1
    assert json.loads(texts["model_config"].strip("`").removeprefix("json"))["hidden_size"] == 7
    hparams = tensorboard_hparams(str(tmp_path / "tb"))
    assert hparams["learning_rate"] == 0.1 and hparams["hidden_size"] == 7 and hparams["eval_strategy"] == "steps"


def test_tensorboard_accepts_an_existing_writer_and_leaves_it_open(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from integrations.tensorboard import TensorBoardCallback
    from tests.backend_files import tensorboard_scalars

    writer = SummaryWriter(log_dir=str(tmp_path / "mine"))
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, max_steps=4, logging_steps=2),
                      train_dataset=RegressionDataset(32), callbacks=[TensorBoardCallback(writer)])
    trainer.train()
    writer.add_scalar("user/after", 1.0, 99)  # still open
    writer.close()
    scalars = tensorboard_scalars(str(tmp_path / "mine"))
    assert [s for s, _ in scalars["train/loss"]] == [2, 4] and scalars["user/after"] == [(99, 1.0)]
    assert not os.path.exists(tmp_path / "out" / "runs")


# -- Weights & Biases, offline ------------------------------------------------------------------
@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "trainforge-tests")
    yield wandb
    wandb.finish()


def offline_runs(tmp_path) -> list[str]:
    return sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*")))


def test_wandb_offline_run_holds_config_history_summary_and_resumes_the_same_run(tmp_path, wandb_offline,
                                                                                 monkeypatch):
    from tests.backend_files import wandb_offline_run

    monkeypatch.setenv("WANDB_LOG_MODEL", "end")
    trainer = logging_run(tmp_path, "wandb", run_name="tiny-regression")
    trainer.train()
    wandb_offline.finish()
    (run_dir,) = offline_runs(tmp_path)
    run = wandb_offline_run(run_dir)
    assert run["name"] == "tiny-regression" and run["project"] == "trainforge-tests"
    assert run["config"]["learning_rate"] == 0.1 and run["config"]["hidden_size"] == 7
    assert not any(k.endswith("_token") for k in run["config"])
    logged = [{k: v for k, v in h.items() if not k.startswith("_")} for h in run["history"]]
    expected = [{tag_of(k): v for k, v in e.items() if k != "step"} | {"train/global_step": e["step"]}
                for e in numeric_history(trainer)]
    assert len(logged) == len(expected)
    for got, want in zip(logged, expected):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-9), key
    assert run["summary"]["train_loss"] == pytest.approx(trainer.state.log_history[-1]["train_loss"])
    (artifact,) = run["artifacts"]
    assert artifact["type"] == "model" and "model.safetensors" in artifact["files"]
    assert "end" in artifact["aliases"]

    monkeypatch.setenv("WANDB_LOG_MODEL", "false")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "resumed"))  # run folders are named by the second and the id
    os.makedirs(tmp_path / "resumed")
    saved = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["WandbCallback"]["attributes"]["run_id"] == run["id"]
    resumed = logging_run(tmp_path, "wandb", run_name="tiny-regression")
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    wandb_offline.finish()
    (second_dir,) = offline_runs(tmp_path / "resumed")
    second = wandb_offline_run(second_dir)
    assert second["id"] == run["id"]  # the same W&B run continues
    steps = [h["train/global_step"] for h in second["history"]]
    assert steps[0] == 6 and steps[-1] == 8


def test_wandb_watch_and_checkpoint_artifacts(tmp_path, wandb_offline, monkeypatch):
    from tests.backend_files import wandb_offline_run

    monkeypatch.setenv("WANDB_WATCH", "all")
    monkeypatch.setenv("WANDB_LOG_MODEL", "checkpoint")
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, report_to="wandb", max_steps=4, logging_steps=1,
                                                         save_strategy="steps", save_steps=2),
                      train_dataset=RegressionDataset(32))
    trainer.train()
    wandb_offline.finish()
    (run_dir,) = offline_runs(tmp_path)
    run = wandb_offline_run(run_dir)
    aliases = sorted(a for art in run["artifacts"] for a in art["aliases"] if a.startswith("checkpoint-"))
    assert aliases == ["checkpoint-2", "checkpoint-4"]
    assert all("trainer_state.json" in art["files"] for art in run["artifacts"])
    watched = {k for h in run["history"] for k in h if k.startswith(("gradients/", "parameters/"))}
    assert any(k.startswith("gradients/a") for k in watched) and any(k.startswith("parameters/a") for k in watched)


def test_each_search_trial_gets_its_own_run(tmp_path, wandb_offline, monkeypatch):
    """The backends' trial handling, driven directly: a TrainerState of trial-0, then of trial-1."""
    from callbacks import TrainerControl, TrainerState
    from integrations.mlflow import MLflowCallback
    from integrations.wandb import WandbCallback
    from tests.backend_files import wandb_offline_run

    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = regression_args(tmp_path, run_name="search")
    callbacks = [WandbCallback(), MLflowCallback()]
    for trial in ("trial-0", "trial-1"):
        state = TrainerState(is_hyper_param_search=True, trial_name=trial, global_step=3)
        for cb in callbacks:
            cb.on_train_begin(args, state, TrainerControl(), model=RegressionModel())
            cb.on_log(args, state, TrainerControl(), logs={"loss": 1.5})
            cb.on_train_end(args, state, TrainerControl())
    wandb_offline.finish()
    mlflow.end_run()  # the search's parent run
    runs = [wandb_offline_run(d) for d in offline_runs(tmp_path)]
    assert sorted(r["name"] for r in runs) == ["trial-0", "trial-1"] and {r["group"] for r in runs} == {"search"}
    assert len({r["id"] for r in runs}) == 2
    client = mlflow.tracking.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in found if r.info.run_name == "search")
    children = sorted(r.info.run_name for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == ["trial-0", "trial-1"]


# -- MLflow ---------------------------------------------------------------------------------------
def test_mlflow_sqlite_store_holds_params_and_metrics_and_resumes_the_same_run(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "trainforge-tests")
    trainer = logging_run(tmp_path, "mlflow", run_name="tiny-regression")
    trainer.train()
    assert mlflow.active_run() is None  # ended at train end
    client = mlflow.tracking.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "trainforge-tests"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tiny-regression"
    assert run.data.params["learning_rate"] == "0.1" and run.data.params["hidden_size"] == "7"
    for key in ("loss", "eval_loss", "learning_rate", "grad_norm", "train_loss"):
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        want = [(e["step"], e[key]) for e in numeric_history(trainer) if key in e]
        assert [s for s, _ in history] == [s for s, _ in want], key
        assert [v for _, v in history] == pytest.approx([v for _, v in want], rel=1e-9), key

    resumed = logging_run(tmp_path, "mlflow", run_name="tiny-regression")
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert len(client.search_runs([experiment.experiment_id])) == 1  # the same run continued
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == [2, 4, 6, 8, 6, 8]  # the interrupted steps, then the resumed ones


# -- progress, tokens -----------------------------------------------------------------------------
def test_progress_bar_shows_loss_and_learning_rate(tmp_path, capsys):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, disable_tqdm=False, max_steps=4, logging_steps=2),
                      train_dataset=RegressionDataset(32))
    trainer.train()
    err = capsys.readouterr().err
    assert "train: 100%" in err and "loss=" in err and "lr=" in err


def test_notebook_progress_is_chosen_only_inside_jupyter(tmp_path):
    from callbacks import NotebookProgressCallback, ProgressCallback, in_notebook

    assert not in_notebook()
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, disable_tqdm=False))
    kinds = {type(cb) for cb in trainer.callback_handler.callbacks}
    assert ProgressCallback in kinds and NotebookProgressCallback not in kinds


def test_notebook_quickstart_runs_in_a_jupyter_kernel(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    notebook = nbformat.read(os.path.join(root, "examples", "notebook_quickstart.ipynb"), as_version=4)
    os.environ["NOTEBOOK_OUTPUT_DIR"], os.environ["NOTEBOOK_EPOCHS"] = str(tmp_path / "nb"), "2"
    try:
        client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path)}})  # any directory
        client.execute()
    finally:
        del os.environ["NOTEBOOK_OUTPUT_DIR"], os.environ["NOTEBOOK_EPOCHS"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs]
    assert "'NotebookProgressCallback'" in texts
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    training = [h for h in html if "<progress" in h and "<table" in h]
    assert training, html
    last = training[-1]
    assert "[90/90 " in last and "Epoch 2.00/2" in last  # 1437 samples / 32 = 45 steps an epoch
    assert "Validation Loss" in last and "Accuracy" in last and last.count("<tr>") == 3  # header + 2 evaluations
    alone = [h for h in html if "<table" in h and "<progress" not in h]  # the last cell's evaluate()
    assert len(alone) == 1 and alone[0].count("<tr>") == 2 and "Validation Loss" in alone[0]
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "eval_accuracy = " in printed
    errors = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "Warning" not in errors, errors  # accelerate's tqdm.auto import: TqdmWarning: IProgress not found
    assert glob.glob(str(tmp_path / "nb" / "checkpoint-*" / "model.safetensors"))


class TokenModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 1)

    def forward(self, input_ids, attention_mask, labels):
        pred = (self.emb(input_ids).squeeze(-1) * attention_mask).sum(-1)
        return {"loss": torch.nn.functional.mse_loss(pred, labels)}


@pytest.mark.parametrize("mode", ["all", "non_padding"])
def test_num_input_tokens_seen_all_or_non_padding_survives_resume(tmp_path, mode):
    lengths = [2 + i % 5 for i in range(24)]
    data = [{"input_ids": torch.tensor([1] * n + [0] * (6 - n)), "attention_mask": torch.tensor([1] * n + [0] * (6 - n)),
             "labels": torch.tensor(float(n))} for n in lengths]
    args = regression_args(tmp_path, include_num_input_tokens_seen=mode, max_steps=6, logging_steps=2,
                           save_strategy="steps", save_steps=3)
    trainer = Trainer(TokenModel(), args, train_dataset=data)
    trainer.train()
    epoch_tokens = 24 * 6 if mode == "all" else sum(lengths)  # 3 steps of 8 samples an epoch, in shuffled order
    seen = [h["num_input_tokens_seen"] for h in trainer.state.log_history if "loss" in h]
    assert len(seen) == 3 and seen[0] < epoch_tokens < seen[1] < seen[2] == 2 * epoch_tokens
    if mode == "all":
        assert seen == [2 * 48, 4 * 48, 6 * 48]
    saved = json.loads((tmp_path / "out" / "checkpoint-3" / "trainer_state.json").read_text())
    assert saved["num_input_tokens_seen"] == epoch_tokens  # folded in before the save
    resumed = Trainer(TokenModel(), args, train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    assert [h["num_input_tokens_seen"] for h in resumed.state.log_history if "loss" in h] == seen


def test_tokens_per_second_is_this_train_calls_tokens_over_its_runtime(tmp_path, monkeypatch):
    import types

    import trainer.loops as loops_module
    import trainer.speed_memory as speed_module

    # a stopped clock: every train() starts at 100 s and every rate is read at 102 s, so each rate is tokens / 2
    monkeypatch.setattr(loops_module, "time", types.SimpleNamespace(time=lambda: 100.0))
    monkeypatch.setattr(speed_module, "time", types.SimpleNamespace(time=lambda: 102.0))
    data = [{"input_ids": torch.ones(6, dtype=torch.long), "attention_mask": torch.ones(6), "labels": torch.tensor(1.0)}
            for _ in range(24)]  # 48 tokens a step
    args = regression_args(tmp_path, include_tokens_per_second=True, max_steps=6, logging_steps=2,
                           save_strategy="steps", save_steps=3)
    assert args.include_num_input_tokens_seen is True  # the rate needs the count
    trainer = Trainer(TokenModel(), args, train_dataset=data)
    metrics = trainer.train().metrics
    rates = [(h["step"], h["train_runtime"], h["train_tokens_per_second"]) for h in trainer.state.log_history
             if "loss" in h]
    assert rates == [(2, 2.0, 48.0), (4, 2.0, 96.0), (6, 2.0, 144.0)]
    assert (metrics["train_tokens_per_second"], metrics["num_input_tokens_seen"]) == (144.0, 288)
    resumed = Trainer(TokenModel(), args, train_dataset=data)
    metrics = resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3")).metrics
    rates = [(h["step"], h["train_tokens_per_second"]) for h in resumed.state.log_history if "loss" in h][1:]
    assert rates == [(4, 24.0), (6, 72.0)]  # the 144 tokens of the first 3 steps were not seen by this call
    assert (metrics["train_tokens_per_second"], metrics["num_input_tokens_seen"]) == (72.0, 288)
    plain = Trainer(TokenModel(), regression_args(tmp_path, include_num_input_tokens_seen=True, max_steps=2),
                    train_dataset=data)
    assert "train_tokens_per_second" not in plain.train().metrics  # train()'s metrics have it only when asked


def test_log_gets_the_train_start_as_a_wall_clock_time_as_in_transformers(tmp_path):
    import time

    elapsed = []

    class Timed(Trainer):
        def log(self, logs, start_time=None):
            if start_time is not None:  # a transformers habit: time.time() - start_time
                elapsed.append(time.time() - start_time)
            super().log(logs, start_time)

    Timed(RegressionModel(), regression_args(tmp_path, max_steps=4, logging_steps=2),
          train_dataset=RegressionDataset(32)).train()
    assert len(elapsed) == 2 and all(0 <= seconds < 60 for seconds in elapsed)


def test_num_input_tokens_seen_needs_the_main_input(tmp_path):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, include_num_input_tokens_seen=True, max_steps=2),
                      train_dataset=RegressionDataset(16))
    with pytest.raises(ValueError, match="include_num_input_tokens_seen counts the tokens of the model's main input "
                                         "'input_ids', but the batch has \\['input_x', 'labels'\\]"):
        trainer.train()
    with pytest.raises(ValueError, match="include_num_input_tokens_seen='some' is not valid"):
        regression_args(tmp_path, include_num_input_tokens_seen="some")


@pytest.mark.parametrize("nan_filter", [True, False])
def test_a_nan_loss_is_replaced_by_the_window_mean_or_logged_as_is(tmp_path, nan_filter):
    class NaNAtSecondCall(RegressionModel):
        def __init__(self, inject: bool):
            super().__init__()
            self.inject, self.calls = inject, 0

        def forward(self, input_x, labels=None):
            out = super().forward(input_x, labels)
            self.calls += 1
            return (out[0] * math.nan, *out[1:]) if self.inject and self.calls == 2 else out

    def losses(inject: bool, **extra) -> list[float]:
        args = regression_args(tmp_path, max_steps=2, logging_steps=2, learning_rate=0.0,
                               logging_nan_inf_filter=nan_filter, overwrite_output_dir=True, **extra)
        trainer = Trainer(NaNAtSecondCall(inject), args, train_dataset=RegressionDataset(32))
        trainer.train()
        return [h["loss"] for h in trainer.state.log_history if "loss" in h]

    first_step_loss = losses(False, logging_first_step=True)[0]
    (logged,) = losses(True)
    if nan_filter:
        assert logged == pytest.approx(first_step_loss, rel=1e-6)  # the NaN counted as the window's finite mean
    else:
        assert math.isnan(logged)
