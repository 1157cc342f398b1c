"""Checkpoints written by earlier versions still resume: ``tests/data/checkpoint_v1/checkpoint-5`` was written
by trainforge 0.1's checkpoint code (``tests/data/make_checkpoint_fixture.py`` says how), and resuming it must
end bit-equal to the same run trained straight through today."""

from __future__ import annotations

import json
import os
import shutil

import torch

from tests.data.make_checkpoint_fixture import FIXTURE, fixture_args
from tests.fixtures import RegressionDataset, RegressionModel
from trainer import Trainer


def train(output_dir, resume=None) -> Trainer:
    trainer = Trainer(model_init=RegressionModel, args=fixture_args(str(output_dir)),
                      train_dataset=RegressionDataset(64))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_a_checkpoint_of_the_first_format_resumes_bit_exactly(tmp_path):
    assert sorted(os.listdir(FIXTURE)) == [
        "dataloader_state.pt", "loss_window.json", "model.safetensors", "optimizer.pt", "rng_state.pth",
        "scheduler.pt", "trainer_state.json", "training_args.json"]
    straight = train(tmp_path / "straight")
    copy = tmp_path / "resumed" / "checkpoint-5"
    shutil.copytree(FIXTURE, copy)
    resumed = train(tmp_path / "resumed", resume=str(copy))
    assert resumed.state.global_step == straight.state.global_step == 12
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    # the logs after the cut, the loss of steps 4-5 saved in loss_window.json included, are the same numbers
    after = [{k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k}
             for e in straight.state.log_history if e["step"] > 5]
    resumed_after = [{k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k}
                     for e in resumed.state.log_history if e["step"] > 5]
    assert after == resumed_after and after[0]["step"] == 6 and "loss" in after[0]
    # and a checkpoint written today has the same files, with the same keys in its JSON files
    today = tmp_path / "straight" / "checkpoint-5"
    assert sorted(os.listdir(today)) == sorted(os.listdir(FIXTURE))
    for name in ("trainer_state.json", "loss_window.json"):
        with open(today / name) as new, open(os.path.join(FIXTURE, name)) as old:
            assert sorted(json.load(new)) == sorted(json.load(old)), name
