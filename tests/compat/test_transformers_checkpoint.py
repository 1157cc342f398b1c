"""A checkpoint-N written by transformers' Trainer resumes in ours (a single-process run): weights, optimizer state
(its two parameter groups merged into ours), schedule position and RNG states (numpy arrays allowed, nothing
else unpickled). The data position is not in such a checkpoint: the epoch's first batches are read and dropped
(``Trainer.get_resumed_dataloader``), with a warning, so a sequential run continues on the batches transformers'
would have taken next."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tests.fixtures import RegressionDataset, RegressionModel, regression_args  # noqa: E402
from trainer import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    args = transformers.TrainingArguments(str(out), max_steps=4, save_steps=2, report_to="none", use_cpu=True,
                                          per_device_train_batch_size=8, learning_rate=0.05, disable_tqdm=True,
                                          logging_steps=1, optim="adamw_torch", train_sampling_strategy="sequential")
    torch.manual_seed(0)
    trainer = transformers.Trainer(RegressionModel(), args, train_dataset=RegressionDataset())
    trainer.train()
    return out, trainer


def test_a_transformers_checkpoint_resumes_here(theirs, tmp_path, caplog):
    out, hf = theirs
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= set(
        os.listdir(out / "checkpoint-2"))
    ours = Trainer(RegressionModel(), regression_args(tmp_path, max_steps=4, learning_rate=0.05, logging_steps=1,
                                                      train_sampling_strategy="sequential"),
                   train_dataset=RegressionDataset())
    with caplog.at_level(logging.WARNING, logger="trainer"):
        ours.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert "has no dataloader state: the epoch's first 2 batches are read and dropped" in caplog.text
    for mine, theirs_param in zip(ours.model.parameters(), hf.model.parameters()):  # the run transformers finished
        torch.testing.assert_close(mine, theirs_param, rtol=1e-6, atol=0)
    assert ours.state.global_step == 4
    steps = [int(s["step"]) for s in ours.optimizer.state_dict()["state"].values()]
    assert steps == [4, 4]  # Adam's count went on from the 2 steps transformers took
    theirs_lr = {e["step"]: e["learning_rate"] for e in hf.state.log_history if "learning_rate" in e}
    ours_lr = {e["step"]: e["learning_rate"] for e in ours.state.log_history if "learning_rate" in e}
    assert ours_lr[3] == pytest.approx(theirs_lr[3]) and ours_lr[4] == pytest.approx(theirs_lr[4])  # the schedule


def test_its_rng_file_is_still_loaded_without_running_code(theirs, tmp_path):
    out, _ = theirs
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import shutil

    crafted = tmp_path / "checkpoint-2"
    shutil.copytree(out / "checkpoint-2", crafted)
    with open(crafted / "rng_state.pth", "wb") as f:
        pickle.dump({"python": Exploit()}, f)
    ours = Trainer(RegressionModel(), regression_args(tmp_path / "run", max_steps=4), train_dataset=RegressionDataset())
    with pytest.raises(ValueError, match="refusing to load the RNG state"):
        ours.train(resume_from_checkpoint=str(crafted))
    assert not marker.exists()
