"""transformers' optim names: every one accepted; one whose library is missing refused with an ImportError naming
the package, as transformers does; the schedule-free ones trained, resumed bit-exactly, and side by side with
transformers' Trainer."""

from __future__ import annotations

import importlib.util

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tests.fixtures import RegressionDataset, RegressionModel, regression_args  # noqa: E402
from trainer import Trainer, TrainingArguments  # noqa: E402
from trainer.optim import ALL_OPTIMIZER_NAMES  # noqa: E402
from trainer.optimizers_external import EXTERNAL_OPTIMIZERS, INTEGRATED  # noqa: E402


def test_every_transformers_optim_name_is_accepted_or_refused_by_what_it_needs():
    from transformers.training_args import OptimizerNames

    assert {o.value for o in OptimizerNames} <= set(ALL_OPTIMIZER_NAMES)
    for name, (module, package) in EXTERNAL_OPTIMIZERS.items():
        if importlib.util.find_spec(module) is None:
            with pytest.raises(ImportError, match=f"optim='{name}' needs the '{module}' package, which is not "
                                                  f"installed: pip install {package.split()[0]}"):
                TrainingArguments("unused", optim=name)
        elif name not in INTEGRATED:
            with pytest.raises(NotImplementedError, match=f"optim='{name}' .* is not supported: "):
                TrainingArguments("unused", optim=name)


schedulefree = pytest.importorskip("schedulefree")


def sf_trainer(out, **overrides):
    values = dict(optim="schedule_free_adamw", max_steps=12, lr_scheduler_type="constant", learning_rate=0.05,
                  train_sampling_strategy="sequential", **overrides)
    torch.manual_seed(0)
    return Trainer(RegressionModel(a=0.5, b=-0.2), regression_args(out, **values), train_dataset=RegressionDataset())


def test_schedule_free_trains_in_train_mode_ends_in_eval_mode_and_resumes_bit_exactly(tmp_path):
    from tests.test_resume import StopAt

    straight = sf_trainer(tmp_path / "straight")
    straight.train()
    inner = getattr(straight.optimizer, "optimizer", straight.optimizer)
    assert isinstance(inner, schedulefree.AdamWScheduleFree)
    assert inner.param_groups[0]["train_mode"] is False  # the model it ends with is the averaged one
    cut = sf_trainer(tmp_path / "cut", save_strategy="steps", save_steps=100)
    cut.add_callback(StopAt(6))
    cut.train()
    resumed = sf_trainer(tmp_path / "cut")
    resumed.train(resume_from_checkpoint=True)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_schedule_free_trains_as_in_transformers_and_ends_on_the_average(tmp_path):
    ours = sf_trainer(tmp_path / "ours")
    ours.train()
    args = transformers.TrainingArguments(str(tmp_path / "theirs"), optim="schedule_free_adamw", max_steps=12,
                                          lr_scheduler_type="constant", learning_rate=0.05, report_to="none",
                                          per_device_train_batch_size=8, train_sampling_strategy="sequential",
                                          use_cpu=True, save_strategy="no", disable_tqdm=True)
    torch.manual_seed(0)
    theirs = transformers.Trainer(RegressionModel(a=0.5, b=-0.2), args, train_dataset=RegressionDataset())
    theirs.train()
    # transformers leaves the optimizer in train mode at the end (and saves in it): its model is the training
    # iterate, not the average the schedule-free authors evaluate and save. Ours ends on the average; in train
    # mode it holds transformers' weights (docs/compat.md)
    averaged = {k: v.clone() for k, v in ours.model.state_dict().items()}
    getattr(ours.optimizer, "optimizer", ours.optimizer).train()
    assert any(not torch.equal(v, ours.model.state_dict()[k]) for k, v in averaged.items())
    for name, value in ours.model.state_dict().items():
        torch.testing.assert_close(value, theirs.model.state_dict()[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("warmup, expected", [(0.25, 3), (5, 5), (0, 0)], ids=["ratio", "steps", "none"])
def test_schedule_free_warmup_follows_the_arguments_warmup_rule(tmp_path, warmup, expected):
    trainer = sf_trainer(tmp_path, warmup_steps=warmup)
    trainer.create_optimizer()
    assert trainer.args.get_warmup_steps(12) == expected  # 0.25 of the 12 steps: ceil(3.0)
    assert {group["warmup_steps"] for group in trainer.optimizer.param_groups} == {expected}
