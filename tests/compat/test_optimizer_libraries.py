"""The optimizers of other libraries that are integrated (bitsandbytes, torchao, GaLore, APOLLO, GrokAdamW,
StableAdamW), each where its library is installed (the dev extras install them all): it trains, its checkpoint
resumes bit-exactly (GrokAdamW cannot: said when resuming), and, where its update draws no random numbers, it ends
on transformers' weights."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from tests.fixtures import RegressionDataset, regression_args  # noqa: E402
from tests.test_resume import StopAt  # noqa: E402
from trainer import Trainer, TrainingArguments  # noqa: E402
from trainer.optimizers_external import EXTERNAL_OPTIMIZERS, INTEGRATED, LOW_RANK, RESUME_CAVEATS  # noqa: E402


class Regressor(nn.Module):
    """y from x through a 32-wide hidden layer (the layer GaLore/APOLLO project); returns (loss, y)."""

    def __init__(self):
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(1, 32), nn.Linear(32, 32), nn.Linear(32, 1)

    def forward(self, input_x, labels=None):
        y = self.out(torch.relu(self.hidden(torch.relu(self.inp(input_x[:, None]))))).squeeze(-1)
        return (nn.functional.mse_loss(y, labels), y) if labels is not None else (y,)


# name -> optim_args (the low-rank ones: a rank that fits the 32x32 layer, a projection renewed every 4 steps)
LOW_RANK_ARGS = "rank=4,update_proj_gap=4"
NAMES = {name: LOW_RANK_ARGS if name in LOW_RANK else None for name in INTEGRATED
         if not name.startswith("schedule_free") and name != "galore_adamw_8bit"}
RANDOM_UPDATE = ("apollo_adamw",)  # its projection is random: drawn from each Trainer's own streams


def installed(name: str) -> bool:
    return importlib.util.find_spec(EXTERNAL_OPTIMIZERS[name][0]) is not None


def values(name, **overrides):
    return {"optim": name, "optim_args": NAMES[name], "optim_target_modules": ["hidden"] if name in LOW_RANK else None,
            "max_steps": 8, "learning_rate": 1e-2, "lr_scheduler_type": "constant", "weight_decay": 0.01,
            "train_sampling_strategy": "sequential", "per_device_train_batch_size": 8, **overrides}


def ours(out, name, **overrides):
    torch.manual_seed(0)
    return Trainer(Regressor(), regression_args(out, **values(name, **overrides)), train_dataset=RegressionDataset())


@pytest.mark.parametrize("name", NAMES)
def test_trains_and_resumes_bit_exactly(tmp_path, name, caplog):
    if not installed(name):
        pytest.skip(f"{EXTERNAL_OPTIMIZERS[name][1]} is not installed")
    straight = ours(tmp_path / "straight", name)
    before = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight.train()
    inner = getattr(straight.optimizer, "optimizer", straight.optimizer)  # accelerate's wrapper, when there is one
    assert type(inner).__module__.startswith(EXTERNAL_OPTIMIZERS[name][0])
    assert all(not torch.equal(v, straight.model.state_dict()[k]) for k, v in before.items())  # every layer moved
    losses = [h["loss"] for h in straight.state.log_history if "loss" in h]
    assert all(torch.isfinite(torch.tensor(losses)))
    cut = ours(tmp_path / "cut", name, save_strategy="steps", save_steps=100)
    cut.add_callback(StopAt(5))  # a checkpoint at step 5, between two renewals of the low-rank projection
    cut.train()
    resumed = ours(tmp_path / "cut", name)
    resumed.train(resume_from_checkpoint=True)
    if name in RESUME_CAVEATS:  # said, and true: the resumed run differs
        assert f"Resuming with optim={name!r}: " in caplog.text
        assert not torch.equal(straight.model.hidden.weight, resumed.model.hidden.weight)
        return
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


# transformers builds GaLore with the learning rate alone: it ignores weight_decay (0 in every group), adam_epsilon
# (GaLore's own 1e-6) and the betas. Compared where both agree (docs/compat.md)
AS_TRANSFORMERS_BUILDS_IT = {name: dict(weight_decay=0.0, adam_epsilon=1e-6) for name in LOW_RANK}


@pytest.mark.parametrize("name", [n for n in NAMES if n not in RANDOM_UPDATE])
def test_ends_on_the_weights_transformers_trains_to(tmp_path, name):
    if not installed(name):
        pytest.skip(f"{EXTERNAL_OPTIMIZERS[name][1]} is not installed")
    common = AS_TRANSFORMERS_BUILDS_IT.get(name, {})
    mine = ours(tmp_path / "ours", name, **common)
    mine.train()
    torch.manual_seed(0)
    args = transformers.TrainingArguments(str(tmp_path / "theirs"), report_to="none", use_cpu=True,
                                          save_strategy="no", disable_tqdm=True, **values(name, **common))
    theirs = transformers.Trainer(Regressor(), args, train_dataset=RegressionDataset())
    theirs.train()
    for key, value in mine.model.state_dict().items():
        torch.testing.assert_close(value, theirs.model.state_dict()[key], rtol=1e-5, atol=1e-6)


def test_low_rank_settings_and_targets_are_checked(tmp_path):
    name = "galore_adamw"
    if not installed(name):
        pytest.skip("galore-torch is not installed")
    with pytest.raises(ValueError, match="optim='galore_adamw' projects the weights of the linear layers "
                                         "optim_target_modules names: set optim_target_modules"):
        TrainingArguments("unused", optim=name)
    trainer = ours(tmp_path, name, optim_target_modules=["attention"])
    with pytest.raises(ValueError, match=r"optim_target_modules=\['attention'\] matches no linear layer"):
        trainer.create_optimizer()
    trainer = ours(tmp_path, name, optim_target_modules="all-linear", optim_args="rank=2,scale=0.5")
    projected = trainer.create_optimizer().param_groups[-1]
    assert (projected["rank"], projected["scale"], projected["update_proj_gap"]) == (2, 0.5, 200)
    assert len(projected["params"]) == 3  # the three linear layers' weights; their biases stay in the other group


@pytest.mark.parametrize("name", ["lomo", "adalomo", "galore_adamw_layerwise", "apollo_adamw_layerwise"])
def test_the_variants_that_bypass_the_step_are_refused_with_the_reason(name):
    if not installed(name):
        pytest.skip(f"{EXTERNAL_OPTIMIZERS[name][1]} is not installed")
    reason = "fuses the update into the backward pass" if "lomo" in name else "steps each parameter from a gradient hook"
    with pytest.raises(NotImplementedError, match=f"optim='{name}' .* is not supported: .*{reason}"):
        TrainingArguments("unused", optim=name)
