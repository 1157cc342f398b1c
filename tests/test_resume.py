"""Exact resume: a run stopped at step k and resumed ends bit-equal to an uninterrupted one."""

from __future__ import annotations

import logging
import os
import pickle
import random
import re

import numpy as np
import pytest
import torch

from tests.fixtures import (
    RegressionDataset,
    RegressionDropoutModel,
    RegressionModel,
    regression_args,
    regression_trainer,
)
from trainer import EarlyStoppingCallback, Trainer, TrainerCallback, sample_generator


class StopAt(TrainerCallback):
    """Saves a checkpoint at step k and stops there, like a run killed right after that save: the stop comes
    after the save (``on_save``), so the checkpoint is not one of a run that a callback ended."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class GlobalRngAugmented(RegressionDataset):
    """Augmentation drawn from the global torch RNG (works with dataloader_num_workers=0)."""

    def __getitem__(self, i):
        sample = super().__getitem__(i)
        sample["input_x"] = np.float32(sample["input_x"] + 0.1 * torch.randn(()).item())
        return sample


class EveryGlobalRngAugmented(RegressionDataset):
    """Augmentation the common way: torch's, python's and numpy's global generators, in any process."""

    def __getitem__(self, i):
        sample = super().__getitem__(i)
        noise = 0.1 * torch.randn(()).item() + 0.05 * random.random() + 0.05 * np.random.rand()
        sample["input_x"] = np.float32(sample["input_x"] + noise)
        return sample


class SeededAugmented(RegressionDataset):
    """Augmentation seeded per sample from (seed, epoch, index): exact with worker processes too."""

    epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, i):
        sample = super().__getitem__(i)
        noise = torch.randn((), generator=sample_generator(7, self.epoch, i)).item()
        sample["input_x"] = np.float32(sample["input_x"] + 0.1 * noise)
        return sample


def _trainer(out, model_init, dataset, callbacks, **overrides):
    values = dict(num_train_epochs=3, logging_steps=3, save_strategy="no", seed=11)
    values.update(overrides)
    return Trainer(args=regression_args(out, **values), model_init=model_init, train_dataset=dataset,
                   eval_dataset=RegressionDataset(8, seed=5), callbacks=callbacks)


def _logs(trainer):
    keep = ("loss", "grad_norm", "learning_rate", "epoch", "step", "eval_loss")
    return [{k: v for k, v in e.items() if k in keep} for e in trainer.state.log_history if "train_runtime" not in e]


def assert_resume_parity(tmp_path, k, model_init=RegressionDropoutModel, dataset=None, callbacks=list,
                         **overrides):
    dataset = dataset if dataset is not None else RegressionDataset(64)
    straight = _trainer(tmp_path / "straight", model_init, dataset, callbacks(), **overrides)
    straight.train()
    first = _trainer(tmp_path / "cut", model_init, dataset, [StopAt(k), *callbacks()], **overrides)
    first.train()
    assert first.state.global_step == k
    resumed = _trainer(tmp_path / "cut", model_init, dataset, callbacks(), **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / f"checkpoint-{k}"))

    assert resumed.state.global_step == straight.state.global_step
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    a, b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for index, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["state"][index][key]), (index, key)
    assert _logs(resumed) == _logs(straight)
    assert resumed.state.log_history[-1]["train_loss"] == straight.state.log_history[-1]["train_loss"]
    return straight, resumed


@pytest.mark.parametrize("k", [5, 8, 11], ids=["inside-epoch", "epoch-boundary", "inside-second-epoch"])
def test_resume_parity_with_dropout(tmp_path, k):
    assert_resume_parity(tmp_path, k)  # 8 steps per epoch


def test_resume_parity_with_gradient_accumulation(tmp_path):
    assert_resume_parity(tmp_path, 3, gradient_accumulation_steps=3, per_device_train_batch_size=4)


def test_resume_parity_with_global_rng_augmentation(tmp_path):
    assert_resume_parity(tmp_path, 6, dataset=GlobalRngAugmented(64))


def test_resume_parity_with_two_workers(tmp_path):
    assert_resume_parity(tmp_path, 6, dataset=SeededAugmented(64), dataloader_num_workers=2)


def test_global_rng_augmentation_gives_the_same_weights_with_0_1_2_workers_and_resumes_exactly(tmp_path):
    dataset = EveryGlobalRngAugmented(64)
    weights = {}
    for workers in (0, 1, 2):
        trainer = _trainer(tmp_path / f"w{workers}", RegressionDropoutModel, dataset, [],
                           dataloader_num_workers=workers)
        trainer.train()
        weights[workers] = trainer.model.state_dict()
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]) and torch.equal(value, weights[2][name]), name
    # cut at step 20 (in the third epoch) with two workers, resumed with two workers: the same weights
    assert_resume_parity(tmp_path / "cut", 20, dataset=dataset, dataloader_num_workers=2)


def test_resume_parity_with_evaluation_and_scheduler(tmp_path):
    assert_resume_parity(tmp_path, 7, eval_strategy="steps", eval_steps=2, lr_scheduler_type="cosine",
                         warmup_steps=3, weight_decay=0.1)


def test_resume_parity_with_early_stopping_mid_patience(tmp_path):
    # greater_is_better on a falling loss: every evaluation after the first "worsens", so the
    # patience counter climbs 1, 2, 3 and training stops at step 4; the checkpoint at step 2 holds counter 1.
    straight, resumed = assert_resume_parity(
        tmp_path, 2, model_init=RegressionModel, callbacks=lambda: [EarlyStoppingCallback(3)],
        eval_strategy="steps", eval_steps=1, metric_for_best_model="eval_loss", greater_is_better=True,
    )
    assert straight.state.global_step == 4
    stopper = next(c for c in resumed.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback))
    assert stopper.early_stopping_patience_counter == 3


def test_resume_true_picks_newest_complete_and_auto_starts_fresh(tmp_path):
    args = dict(save_strategy="steps", save_steps=4, max_steps=12)
    trainer = regression_trainer(tmp_path, **args)
    trainer.train()
    out = tmp_path / "out"
    os.makedirs(out / ".tmp-checkpoint-16")  # a save that was killed half-way
    (out / "checkpoint-20").mkdir()  # a directory with the right name but no trainer_state.json
    starts = []

    class StartStep(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            starts.append(state.global_step)

    resumed = regression_trainer(tmp_path, **{**args, "max_steps": 14}, callbacks=[StartStep()])
    resumed.train(resume_from_checkpoint=True)
    assert starts == [12]  # checkpoint-12, not the half-written 16 nor the empty 20
    assert resumed.state.global_step == 14
    assert not (out / ".tmp-checkpoint-16").exists()  # stale temporaries are cleaned at the next save
    fresh = regression_trainer(tmp_path / "empty", max_steps=2)
    fresh.train(resume_from_checkpoint="auto")
    assert fresh.state.global_step == 2
    again = regression_trainer(tmp_path / "empty", max_steps=4, save_strategy="steps",
                               save_steps=2, resume_from_checkpoint="auto")
    again.train()  # args.resume_from_checkpoint='auto': nothing saved yet, starts fresh
    again2 = regression_trainer(tmp_path / "empty", max_steps=6, save_strategy="steps",
                                save_steps=2, resume_from_checkpoint="auto")
    again2.train()
    assert again2.state.log_history[0]["step"] >= 4  # resumed from checkpoint-4: no logs before it repeated


def test_resume_errors_are_clear(tmp_path, caplog):
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=4, max_steps=4)
    trainer.train()
    ckpt = tmp_path / "out" / "checkpoint-4"
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint='/nope': no such directory"):
        trainer.train(resume_from_checkpoint="/nope")
    with pytest.raises(ValueError, match=re.escape("is not a checkpoint: it has no trainer_state.json")):
        trainer.train(resume_from_checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        regression_trainer(tmp_path / "x").train(
                           resume_from_checkpoint=True)

    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_x, labels=None):
            return ((input_x * self.w - labels) ** 2).mean()

    other = Trainer(Other(), regression_args(tmp_path), train_dataset=RegressionDataset())
    with pytest.raises(ValueError, match=re.escape("do not fit Other: missing keys ['w'], unexpected keys ['a', 'b']")):
        other.train(resume_from_checkpoint=str(ckpt))

    changed = regression_trainer(tmp_path, per_device_train_batch_size=4, max_steps=6)
    with caplog.at_level(logging.WARNING, logger="trainer"):
        changed.train(resume_from_checkpoint=str(ckpt))
    assert "per_device_train_batch_size: 8 -> 4" in caplog.text


def test_another_optimizer_is_refused_before_a_step_and_the_named_ways_out_resume(tmp_path):
    regression_trainer(tmp_path, save_strategy="steps", save_steps=4, max_steps=4, optim="adamw_torch").train()
    sgd = regression_trainer(tmp_path, max_steps=6, optim="sgd")
    with pytest.raises(ValueError, match=re.escape("the optimizer state was saved by optim='adamw_torch'")):
        sgd.train(resume_from_checkpoint=True)
    assert sgd.state.global_step == 0  # refused before any part was restored, and before a step
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-4"]
    # the fused AdamW takes the plain one's state: it resumes with it (Adam's step count goes on from 4)
    fused = regression_trainer(tmp_path / "fused", max_steps=6, optim="adamw_torch_fused", save_strategy="no")
    fused.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert [float(s["step"]) for s in fused.optimizer.state_dict()["state"].values()] == [6.0, 6.0]
    fresh = regression_trainer(tmp_path, max_steps=6, optim="sgd", resume_weights_only=True, save_strategy="no")
    assert fresh.train(resume_from_checkpoint=True).global_step == 6


class OomAbove(RegressionDropoutModel):
    """Runs out of memory on batches larger than ``limit`` (the memory free at the time); records each size."""

    limit = 4
    sizes: list[int] = []

    def forward(self, input_x, labels=None):
        OomAbove.sizes.append(input_x.shape[0])
        if input_x.shape[0] > OomAbove.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().forward(input_x, labels)


def test_auto_find_batch_size_resumes_at_the_size_the_run_settled_on(tmp_path, monkeypatch):
    values = dict(per_device_train_batch_size=16, auto_find_batch_size=True, num_train_epochs=1)
    straight = _trainer(tmp_path / "straight", OomAbove, RegressionDataset(64), [], **values)
    straight.train()
    _trainer(tmp_path / "cut", OomAbove, RegressionDataset(64), [StopAt(5)], **values).train()
    assert straight.state.train_batch_size == 4 and straight.state.global_step == 16
    monkeypatch.setattr(OomAbove, "limit", 64)  # the resumed run has the memory for 16: it still trains with 4
    monkeypatch.setattr(OomAbove, "sizes", [])
    resumed = _trainer(tmp_path / "cut", OomAbove, RegressionDataset(64), [], **values)
    resumed.train(resume_from_checkpoint=True)
    assert set(OomAbove.sizes) == {4} and resumed.state.train_batch_size == 4
    assert resumed.state.global_step == 16
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert _logs(resumed) == _logs(straight)


def test_save_only_model_checkpoints_cannot_resume(tmp_path):
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=4, max_steps=4,
                                 save_only_model=True)
    trainer.train()
    ckpt = tmp_path / "out" / "checkpoint-4"
    assert sorted(os.listdir(ckpt)) == ["model.safetensors", "trainer_state.json", "training_args.json"]
    with pytest.raises(ValueError, match="saved with save_only_model=True"):
        trainer.train(resume_from_checkpoint=str(ckpt))


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def test_crafted_pickle_in_optimizer_file_is_refused(tmp_path):
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=4, max_steps=4)
    trainer.train()
    ckpt = tmp_path / "out" / "checkpoint-4"
    _Exploit.marker = str(tmp_path / "pwned")
    with open(ckpt / "optimizer.pt", "wb") as f:
        pickle.dump({"state": _Exploit()}, f)
    with pytest.raises(ValueError, match=r"refusing to load the optimizer state from .*optimizer.pt: it holds more "
                                         r"than tensors and plain containers"):
        trainer.train(resume_from_checkpoint=str(ckpt))
    assert not os.path.exists(tmp_path / "pwned")


class PlainStream(torch.utils.data.IterableDataset):
    """A finite stream of the regression samples, with no state of its own: resume replays it."""

    def __init__(self):
        self.base = RegressionDataset(64)

    def __iter__(self):
        for i in range(len(self.base)):
            yield self.base[i]


class StatefulStream(PlainStream):
    """The same stream tracking its position (torchdata's Stateful protocol): resume jumps there."""

    def __init__(self):
        super().__init__()
        self.position = 0
        self.start = 0

    def __iter__(self):
        start, self.start = self.start, 0
        for i in range(start, len(self.base)):
            self.position = i + 1
            yield self.base[i]

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.start = state["position"]


@pytest.mark.parametrize("stream, message", [(PlainStream, "are replayed (read and dropped)"),
                                             (StatefulStream, "data position restored from the dataloader state")])
def test_iterable_dataset_resume(tmp_path, caplog, stream, message):
    with caplog.at_level(logging.INFO, logger="trainer"):
        assert_resume_parity(tmp_path, 5, dataset=stream(), max_steps=20, num_train_epochs=1)
    assert message in caplog.text


def test_re_running_a_finished_run_takes_no_step(tmp_path, caplog):
    """resume_from_checkpoint="auto" on a run that reached max_steps: the same command, run again and again,
    trains no further, keeps the checkpoints, and returns the run's own result."""
    args = dict(max_steps=20, save_strategy="steps", save_steps=10, save_total_limit=2)
    first = regression_trainer(tmp_path, **args)
    result = first.train()
    out = tmp_path / "out"
    names = sorted(os.listdir(out))
    assert [n for n in names if n.startswith("checkpoint-")] == ["checkpoint-10", "checkpoint-20"]
    for _ in range(3):
        again = regression_trainer(tmp_path, **args)
        with caplog.at_level(logging.WARNING, logger="trainer"):
            caplog.clear()
            rerun = again.train(resume_from_checkpoint="auto")
        assert rerun.global_step == again.state.global_step == 20
        assert rerun.training_loss == result.training_loss
        assert sorted(os.listdir(out)) == names
        for name, value in first.model.state_dict().items():
            assert torch.equal(value, again.model.state_dict()[name]), name
        said = [r.getMessage() for r in caplog.records if "finished run" in r.getMessage()]
        assert len(said) == 1 and "(it reached max_steps=20 at step 20): no step is taken" in said[0]


def test_re_running_an_early_stopped_run_takes_no_step(tmp_path, caplog):
    class StopAt6(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                control.should_training_stop = control.should_save = True

    args = dict(max_steps=20, save_strategy="steps", save_steps=4)
    stopped = regression_trainer(tmp_path, callbacks=[StopAt6()], **args)
    stopped.train()
    assert stopped.state.global_step == 6
    again = regression_trainer(tmp_path, **args)
    with caplog.at_level(logging.WARNING, logger="trainer"):
        again.train(resume_from_checkpoint="auto")
    assert again.state.global_step == 6
    assert [n for n in sorted(os.listdir(tmp_path / "out")) if n.startswith("checkpoint-")] == [
        "checkpoint-4", "checkpoint-6"]
    assert any("was stopped by a callback at step 6" in r.getMessage() for r in caplog.records)
