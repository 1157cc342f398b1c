"""Checkpoints written during training: HF file names, rotation that keeps the best, best model at end."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.fixtures import RegressionDataset, RegressionModel, regression_args, regression_trainer
from tests.test_callbacks import ScriptedMetric
from trainer import Trainer
from trainer.checkpoint import checkpoints_to_delete, list_checkpoints, load_model_weights

HF_STATE_FIELDS = {
    "best_global_step", "best_metric", "best_model_checkpoint", "epoch", "eval_steps", "global_step",
    "is_hyper_param_search", "is_local_process_zero", "is_world_process_zero", "log_history", "logging_steps",
    "max_steps", "num_input_tokens_seen", "num_train_epochs", "save_steps", "stateful_callbacks", "total_flos",
    "train_batch_size", "trial_name", "trial_params",
}


def test_checkpoint_files_and_contents(tmp_path):
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=5)
    trainer.train()
    out = tmp_path / "out"
    assert [os.path.basename(p) for p in list_checkpoints(str(out))] == ["checkpoint-5", "checkpoint-10",
                                                                          "checkpoint-15", "checkpoint-16"]
    assert not [n for n in os.listdir(out) if n.startswith(".tmp")]
    ckpt = out / "checkpoint-10"
    assert sorted(os.listdir(ckpt)) == ["dataloader_state.pt", "loss_window.json", "model.safetensors", "optimizer.pt",
                                        "rng_state.pth", "scheduler.pt", "trainer_state.json", "training_args.json"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert set(state) == HF_STATE_FIELDS
    assert state["global_step"] == 10 and state["save_steps"] == 5
    args = json.loads((ckpt / "training_args.json").read_text())
    assert args["save_steps"] == 5 and args["output_dir"] == str(out)
    opt = torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert int(opt["state"][0]["step"]) == 10
    model = RegressionModel()
    load_model_weights(model, str(ckpt))
    assert model.a.item() != 0.0


def test_rotation_keeps_the_best_and_the_newest():
    paths = [f"/o/checkpoint-{i}" for i in (2, 4, 6, 8)]
    assert checkpoints_to_delete(paths, 2, {"/o/checkpoint-2"}) == ["/o/checkpoint-4", "/o/checkpoint-6"]
    assert checkpoints_to_delete(paths, 1, {"/o/checkpoint-4"}) == ["/o/checkpoint-2", "/o/checkpoint-6"]
    assert checkpoints_to_delete(paths, None, set()) == []


@pytest.mark.parametrize("save_strategy", ["steps", "best"])
def test_load_best_model_at_end_with_rotation(tmp_path, save_strategy):
    scores = [3.0, 1.0, 2.0, 2.5, 2.2, 2.8, 2.9, 3.3]  # best (lowest) at the 2nd evaluation, step 4
    args = regression_args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy=save_strategy, save_steps=2,
                           save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="score",
                           greater_is_better=False)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), eval_dataset=RegressionDataset(8),
                      compute_metrics=ScriptedMetric(scores))
    trainer.train()
    best = str(tmp_path / "out" / "checkpoint-4")
    assert trainer.state.best_model_checkpoint == best
    assert trainer.state.best_metric == 1.0 and trainer.state.best_global_step == 4
    kept = [os.path.basename(p) for p in list_checkpoints(str(tmp_path / "out"))]
    assert kept == (["checkpoint-4", "checkpoint-16"] if save_strategy == "steps" else ["checkpoint-2", "checkpoint-4"])
    saved = RegressionModel()
    load_model_weights(saved, best)
    assert torch.equal(trainer.model.a, saved.a) and torch.equal(trainer.model.b, saved.b)


def test_save_model_state_and_metrics_files(tmp_path):
    trainer = regression_trainer(tmp_path, max_steps=4)
    metrics = trainer.train().metrics
    trainer.save_model()
    trainer.save_state()
    trainer.save_metrics("train", metrics)
    trainer.save_metrics("eval", {"eval_loss": 0.5})
    out = tmp_path / "out"
    assert {"model.safetensors", "training_args.json", "trainer_state.json", "train_results.json",
            "eval_results.json", "all_results.json"} <= set(os.listdir(out))
    merged = json.loads((out / "all_results.json").read_text())
    assert merged["eval_loss"] == 0.5 and merged["train_loss"] == metrics["train_loss"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["log_history"][-1]["train_loss"] == metrics["train_loss"]


def test_log_metrics_table(tmp_path, capsys):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path))
    trainer.log_metrics("eval", {"eval_loss": 0.123456, "eval_samples": 10})
    out = capsys.readouterr().out
    assert "***** eval metrics *****" in out and "eval_loss    =       0.1235" in out


def test_tied_weights_are_saved_once(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(5, 3)
            self.out = torch.nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, ids, labels=None):
            logits = self.out(self.emb(ids))
            return (torch.nn.functional.cross_entropy(logits, labels), logits)

    data = [{"ids": torch.tensor(i % 5), "labels": torch.tensor((i + 1) % 5)} for i in range(16)]
    trainer = Trainer(Tied(), regression_args(tmp_path, max_steps=2), train_dataset=data)
    trainer.train()
    trainer.save_model()
    fresh = Tied()
    load_model_weights(fresh, str(tmp_path / "out"))
    assert torch.equal(fresh.out.weight, trainer.model.emb.weight) and fresh.out.weight is fresh.emb.weight


def test_a_new_run_into_a_used_output_dir_goes_on_beside_it_and_keeps_its_best(tmp_path, caplog):
    """A notebook cell run twice: as transformers 5, the second run trains beside the first one's checkpoints
    with a warning; rotation keeps the first run's best and this run's newest, and says when it deletes one of
    the first run's."""
    import logging

    values = dict(max_steps=8, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2,
                  save_total_limit=2, metric_for_best_model="loss", eval_dataset=RegressionDataset(16, seed=3))
    first = regression_trainer(tmp_path, **values)
    first.train()
    first_best = first.state.best_model_checkpoint
    with caplog.at_level(logging.WARNING, logger="trainer"):
        second = regression_trainer(tmp_path, **{**values, "max_steps": 6, "learning_rate": 0.5})
        second.train()
    text = caplog.text
    assert "already holds checkpoints of an earlier run" in text and "resume_from_checkpoint was not given" in text
    names = sorted(os.listdir(tmp_path / "out"))
    assert os.path.basename(first_best) in names and "checkpoint-6" in names  # the earlier best, this run's newest
    assert "left in output_dir by an earlier run" in text
    assert second.state.global_step == 6
