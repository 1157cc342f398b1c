"""Optimizers and schedules by name: each builds and steps; groups and shapes are right."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.fixtures import RegressionDataset, RegressionModel, regression_args, regression_trainer
from trainer import Trainer, TrainingArguments, get_scheduler
from trainer.optim import OPTIMIZER_NAMES, SCHEDULER_NAMES, create_optimizer, decay_parameter_names


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(4, 4)
        self.LayerNorm = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)
        self.rms = nn.RMSNorm(4)
        self.out = nn.Linear(4, 1, bias=False)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x, labels):
        h = self.rms(self.bn(self.LayerNorm(self.dense(x))))
        return nn.functional.mse_loss(self.out(h).squeeze(-1), labels)


def test_no_decay_groups():
    model = Block()
    assert decay_parameter_names(model) == {"dense.weight", "out.weight"}
    opt = create_optimizer(model, TrainingArguments(output_dir="x", weight_decay=0.1))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model.dense.weight), id(model.out.weight)}
    expected_plain = {model.dense.bias, model.LayerNorm.weight, model.LayerNorm.bias, model.bn.weight, model.bn.bias,
                      model.rms.weight}
    assert {id(p) for p in plain["params"]} == {id(p) for p in expected_plain}


def test_no_weight_decay_means_one_group():
    model = Block()
    opt = create_optimizer(model, TrainingArguments(output_dir="x", weight_decay=0.0))
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.0
    assert len(opt.param_groups[0]["params"]) == len([p for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_builds_and_steps(tmp_path, name):
    trainer = regression_trainer(tmp_path, optim=name, max_steps=3, learning_rate=0.01)
    before = trainer.model.a.item()
    trainer.train()
    assert trainer.model.a.item() != before
    if name == "adamw_torch_fused":
        assert trainer.optimizer.defaults["fused"] is True
    if name == "adafactor":
        assert "Adafactor" in type(trainer.optimizer).__name__


def test_optim_args_reach_the_optimizer(tmp_path):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, optim="sgd", optim_args="momentum=0.9,nesterov=True"))
    opt = trainer.create_optimizer()
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] is True


def test_adam_hyperparameters(tmp_path):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-6,
                                                         learning_rate=0.003))
    opt = trainer.create_optimizer()
    assert opt.defaults["betas"] == (0.8, 0.95) and opt.defaults["eps"] == 1e-6 and opt.defaults["lr"] == 0.003


def multipliers(name, warmup=10, total=100, steps=(0, 5, 10, 30, 55, 99, 100), **kwargs):
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total,
                          scheduler_specific_kwargs=kwargs)
    out = {}
    for step in range(max(steps) + 1):
        if step in steps:
            out[step] = opt.param_groups[0]["lr"] / 2.0
        opt.step()
        sched.step()
    return out


def progress(s, w=10, t=100):
    return (s - w) / (t - w)


FORMULAS = {
    "linear": lambda s: s / 10 if s < 10 else max(0.0, 1 - progress(s)),
    "cosine": lambda s: s / 10 if s < 10 else 0.5 * (1 + math.cos(math.pi * progress(s))),
    "cosine_with_restarts": lambda s: s / 10 if s < 10 else (
        0.0 if progress(s) >= 1 else 0.5 * (1 + math.cos(math.pi * ((1 * progress(s)) % 1)))),
    "polynomial": lambda s: s / 10 if s < 10 else ((2.0 - 1e-7) * (1 - progress(s)) + 1e-7) / 2.0,
    "constant": lambda s: 1.0,
    "constant_with_warmup": lambda s: s / 10 if s < 10 else 1.0,
    "inverse_sqrt": lambda s: s / 10 if s < 10 else 1 / math.sqrt((s + 10 - 10) / 10),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_schedule_shapes_match_formula(name):
    got = multipliers(name)
    for step, value in got.items():
        assert value == pytest.approx(FORMULAS[name](step), abs=1e-9), (name, step)


def test_cosine_with_restarts_cycles_and_polynomial_power():
    got = multipliers("cosine_with_restarts", num_cycles=2, steps=(10, 54, 55, 99))
    assert got[10] == pytest.approx(1.0) and got[54] < 0.01 and got[55] == pytest.approx(1.0)
    got = multipliers("polynomial", power=2.0, lr_end=0.0, steps=(55,))
    assert got[55] == pytest.approx(0.25)


def test_cosine_with_min_lr():
    got = multipliers("cosine_with_min_lr", min_lr_rate=0.1, steps=(5, 10, 55, 100))
    assert got[5] == pytest.approx(0.5) and got[10] == pytest.approx(1.0)
    assert got[55] == pytest.approx(0.55) and got[100] == pytest.approx(0.1)
    got = multipliers("cosine_with_min_lr", min_lr=0.5, steps=(100,))  # lr 2.0 -> rate 0.25
    assert got[100] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="needs exactly one of"):
        multipliers("cosine_with_min_lr")


def test_reduce_lr_on_plateau_steps_with_eval_metric(tmp_path):
    from tests.test_callbacks import ScriptedMetric

    args = regression_args(tmp_path, lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="steps", eval_steps=1,
                           max_steps=4, lr_scheduler_kwargs={"patience": 0, "factor": 0.5}, learning_rate=0.1,
                           metric_for_best_model="score")
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), eval_dataset=RegressionDataset(8),
                      compute_metrics=ScriptedMetric([1.0, 2.0, 3.0, 0.5]))
    trainer.train()  # mode 'min': evaluations 2 and 3 are worse and halve the lr; the 4th improves
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    assert lrs == [] or lrs[-1] == pytest.approx(0.025)


def test_warmup_ratio_and_steps(tmp_path):
    trainer = regression_trainer(tmp_path, warmup_ratio=0.25, max_steps=16, logging_steps=1)
    trainer.train()
    lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    # the rate each logged step used, as transformers logs it: warm-up from 0 over 4 steps, the peak at step 5
    assert lrs[:5] == pytest.approx([0.0, 0.1 / 4, 0.1 / 2, 0.1 * 3 / 4, 0.1])
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, warmup_steps=2, warmup_ratio=0.5, max_steps=16))
    trainer.create_optimizer_and_scheduler(16)
    assert trainer.lr_scheduler.lr_lambdas[0](1) == pytest.approx(0.5)  # warmup_steps wins


def test_every_scheduler_name_builds(tmp_path):
    for name in SCHEDULER_NAMES:
        kwargs = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
                  "warmup_stable_decay": {"num_decay_steps": 2}}.get(name)
        trainer = regression_trainer(tmp_path, lr_scheduler_type=name, max_steps=3,
                                     lr_scheduler_kwargs=kwargs,
                                     eval_strategy="steps" if name in ("reduce_lr_on_plateau", "greedy") else "no",
                                     eval_steps=1, eval_dataset=RegressionDataset(8))
        trainer.train()
        assert trainer.state.global_step == 3, name


def test_bad_scheduler_kwargs_fail_early():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1)
    with pytest.raises(ValueError, match=r"lr_scheduler_kwargs=\{'bogus': 1\} do not fit lr_scheduler_type='linear'"):
        get_scheduler("linear", opt, 0, 10, {"bogus": 1})
