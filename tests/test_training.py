"""The core loop on the regression fixture: exact reproducibility, accumulation, model_init, data."""

from __future__ import annotations

import gc
import logging
import mmap
import os
import sys
import time

import numpy as np
import pytest
import torch

from tests.fixtures import (
    RegressionDataset,
    RegressionDropoutModel,
    RegressionModel,
    SampleIterableDataset,
    params,
    regression_args,
    train_regression,
)
from trainer import Trainer, TrainerCallback


def test_learns_the_line(tmp_path):
    trainer = train_regression(tmp_path, num_train_epochs=20)
    assert trainer.model.a.item() == pytest.approx(2.0, abs=0.1)
    assert trainer.model.b.item() == pytest.approx(3.0, abs=0.1)


def test_same_seed_gives_identical_weights(tmp_path):
    runs = [params(train_regression(tmp_path / str(i), model_init=RegressionDropoutModel, seed=7).model) for i in range(2)]
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_different_seed_gives_different_weights(tmp_path):
    a = params(train_regression(tmp_path / "a", model_init=RegressionDropoutModel, seed=1).model)
    b = params(train_regression(tmp_path / "b", model_init=RegressionDropoutModel, seed=2).model)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_data_seed_changes_order_only(tmp_path):
    """Same model seed, different data_seed: different result; same data_seed: identical."""
    a = params(train_regression(tmp_path / "a", data_seed=1).model)
    b = params(train_regression(tmp_path / "b", data_seed=2).model)
    c = params(train_regression(tmp_path / "c", data_seed=1, seed=99).model)
    assert not torch.equal(a["a"], b["a"])
    assert torch.equal(a["a"], c["a"])  # RegressionModel has no randomness of its own


def test_gradient_accumulation_equals_bigger_batch(tmp_path):
    big = train_regression(tmp_path / "big", per_device_train_batch_size=8, gradient_accumulation_steps=1)
    acc = train_regression(tmp_path / "acc", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    assert big.state.global_step == acc.state.global_step == 16
    for key, value in params(big.model).items():
        torch.testing.assert_close(value, params(acc.model)[key], rtol=1e-5, atol=1e-6)
    big_losses = [e["loss"] for e in big.state.log_history if "loss" in e]
    acc_losses = [e["loss"] for e in acc.state.log_history if "loss" in e]
    np.testing.assert_allclose(big_losses, acc_losses, rtol=1e-5)


def test_accumulation_remainder_is_a_step(tmp_path):
    """10 batches with accumulation 4 -> 3 optimizer steps per epoch (4 + 4 + 2)."""
    trainer = train_regression(tmp_path, train_dataset=RegressionDataset(40), per_device_train_batch_size=4,
                               gradient_accumulation_steps=4, num_train_epochs=1)
    assert trainer.state.global_step == 3
    assert trainer.state.max_steps == 3


def test_model_init_gives_fresh_model_each_train(tmp_path):
    built = []

    def model_init():
        built.append(RegressionModel())
        return built[-1]

    trainer = Trainer(args=regression_args(tmp_path), train_dataset=RegressionDataset(), model_init=model_init)
    trainer.train()
    first = params(trainer.model)
    trainer.train()
    second = params(trainer.model)
    assert len(built) == 3  # construction + one per train()
    assert trainer.model is built[-1] and built[1] is not built[2]
    for key in first:
        assert torch.equal(first[key], second[key]), "a fresh, equally seeded model must train identically"


def test_model_init_with_trial_argument(tmp_path):
    seen = []
    trainer = Trainer(args=regression_args(tmp_path), train_dataset=RegressionDataset(),
                      model_init=lambda trial: seen.append(trial) or RegressionModel())
    trainer.train(trial={"lr": 1})
    assert seen == [None, {"lr": 1}]


def test_max_steps_overrides_epochs_and_fractional_epochs(tmp_path):
    trainer = train_regression(tmp_path / "a", max_steps=5, num_train_epochs=100)
    assert trainer.state.global_step == 5 and trainer.state.max_steps == 5
    trainer = train_regression(tmp_path / "b", num_train_epochs=1.5)  # 8 steps per epoch
    assert trainer.state.global_step == 12
    assert trainer.state.epoch == pytest.approx(1.5)


def test_iterable_dataset_with_max_steps(tmp_path):
    trainer = train_regression(tmp_path, train_dataset=SampleIterableDataset(64), max_steps=20)
    assert trainer.state.global_step == 20  # 8 batches per pass, the stream restarts each epoch
    assert trainer.model.a.item() != 0.0


def test_iterable_dataset_needs_max_steps(tmp_path):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path), train_dataset=SampleIterableDataset())
    with pytest.raises(ValueError, match=r"set TrainingArguments\(max_steps=N\)"):
        trainer.train()


def test_log_history_keys_and_loss_average(tmp_path):
    trainer = train_regression(tmp_path, logging_steps=4, max_grad_norm=1.0)
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in logs] == [4, 8, 12, 16]
    for entry in logs:
        assert set(entry) == {"loss", "grad_norm", "learning_rate", "epoch", "step"}
    final = trainer.state.log_history[-1]
    for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "epoch"):
        assert key in final
    assert final["train_loss"] == pytest.approx(np.mean([e["loss"] for e in logs]), rel=1e-6)


def test_logging_first_step_and_fraction_of_steps(tmp_path):
    trainer = train_regression(tmp_path, logging_steps=0.25, logging_first_step=True)  # 16 steps
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 4, 8, 12, 16]


def test_nan_losses_are_filtered_from_logs_only(tmp_path):
    class NanSometimes(RegressionModel):
        calls = 0

        def forward(self, input_x, labels=None):
            loss, y = super().forward(input_x, labels)
            NanSometimes.calls += 1
            if NanSometimes.calls == 2:
                loss = loss * float("nan")
            return loss, y

    trainer = train_regression(tmp_path, model=NanSometimes(), max_steps=4, logging_steps=4, learning_rate=0.0)
    logged = trainer.state.log_history[0]["loss"]
    assert np.isfinite(logged)


class NanFrom(RegressionModel):
    """Its loss is nan from the ``start``-th forward call on (a diverged run; every label -100 gives the same)."""

    def __init__(self, start: int):
        super().__init__()
        self.start, self.calls = start, 0

    def forward(self, input_x, labels=None):
        loss, y = super().forward(input_x, labels)
        self.calls += 1
        return (loss * float("nan") if self.calls >= self.start else loss), y


@pytest.mark.parametrize("nan_filter", [True, False])
def test_a_diverged_run_logs_nan_never_zero(tmp_path, caplog, nan_filter):
    """Steps 1-3 finite, 4-12 nan, logging every 4: the first log is the mean of the finite losses with the
    filter (nan without), the later ones are nan either way; the filter warns once, naming step 4."""
    with caplog.at_level(logging.WARNING, logger="trainer"):
        trainer = train_regression(tmp_path, model=NanFrom(start=4), max_steps=12, logging_steps=4,
                                   learning_rate=0.0, logging_nan_inf_filter=nan_filter)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and np.isnan(losses[1]) and np.isnan(losses[2])
    assert np.isfinite(losses[0]) == nan_filter
    assert np.isnan(trainer.state.log_history[-1]["train_loss"])
    said = [r.getMessage() for r in caplog.records if "nan/inf" in r.getMessage()]
    assert len(said) == (1 if nan_filter else 0)
    if nan_filter:
        assert said[0].startswith("The training loss is nan/inf at step 4:")


def test_no_device_sync_per_step(tmp_path, monkeypatch):
    """The loop syncs only when a log is due: 40 steps, logging every 20 -> 2 logs' worth of syncs."""
    calls = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a):
            caller = sys._getframe(1).f_code.co_filename
            if name == "tolist" and caller.endswith(f"{os.sep}data.py"):  # the sampler's index permutation (CPU)
                return original(self, *a)
            if any(f"{os.sep}{pkg}{os.sep}" in caller for pkg in ("trainer", "callbacks", "integrations")):
                calls.append((name, caller, sys._getframe(1).f_lineno))
            return original(self, *a)

        return wrapper

    for name in ("item", "__float__", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    train_regression(tmp_path, num_train_epochs=5, logging_steps=20, max_grad_norm=1.0)
    # per log: one read of the loss, the grad norm and the first nan/inf step together; then the final train_loss
    assert [c[0] for c in calls] == ["tolist", "tolist", "tolist"], calls


def test_clipping_bounds_the_gradient(tmp_path):
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(torch.sqrt(sum(p.grad.pow(2).sum() for p in self.param_groups[0]["params"])).item())
            return super().step(closure)

    model = RegressionModel()
    opt = Spy(model.parameters(), lr=0.01)
    trainer = Trainer(model, regression_args(tmp_path, max_grad_norm=0.5), train_dataset=RegressionDataset(),
                      optimizers=(opt, None))
    trainer.train()
    assert max(seen) <= 0.5 + 1e-5


def test_user_optimizer_and_scheduler_are_used(tmp_path):
    model = RegressionModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    trainer = Trainer(model, regression_args(tmp_path, max_steps=3), train_dataset=RegressionDataset(),
                      optimizers=(opt, sched))
    trainer.train()
    assert trainer.optimizer is opt and trainer.lr_scheduler is sched
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**3)


def test_scheduler_without_optimizer_is_refused(tmp_path):
    model = RegressionModel()
    sched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(model.parameters(), lr=1), 1)
    with pytest.raises(ValueError, match=r"optimizers=\(None, scheduler\)"):
        Trainer(model, regression_args(tmp_path), optimizers=(None, sched))


def test_label_smoothing_matches_torch(tmp_path):
    from trainer.label_smoothing import LabelSmoother

    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, -100, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1, ignore_index=-100)
    torch.testing.assert_close(LabelSmoother(0.1)({"logits": logits}, labels), expected)


def test_label_smoothing_in_training(tmp_path):
    from tests.test_data import ClassifierDataset, ListPadder, TinyClassifier

    trainer = Trainer(TinyClassifier(), regression_args(tmp_path, label_smoothing_factor=0.2, max_steps=2),
                      train_dataset=ClassifierDataset(), processing_class=ListPadder())
    seen = []
    original = trainer.label_smoother.__call__
    trainer.label_smoother = lambda out, labels, **kwargs: seen.append(kwargs) or original(out, labels, **kwargs)
    trainer.train()
    assert len(seen) == 2
    assert seen[0]["shift_labels"] is False and int(seen[0]["num_items_in_batch"]) == 8  # the step's 8 labels


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_runs_on_cpu(tmp_path, precision, dtype):
    seen = []

    class Probe(RegressionDropoutModel):
        def forward(self, input_x, labels=None):
            out = super().forward(input_x, labels)
            seen.append(self.net[0](input_x.unsqueeze(-1)).dtype)
            return out

    trainer = train_regression(tmp_path, model=Probe(), max_steps=4, **{precision: True})
    assert seen and set(seen) == {dtype}
    assert (trainer.runtime.scaler is not None) == (precision == "fp16")
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_fp16_full_eval_casts_model(tmp_path):
    trainer = Trainer(RegressionModel(a=2.0, b=3.0), regression_args(tmp_path, fp16_full_eval=True),
                      eval_dataset=RegressionDataset(16))
    metrics = trainer.evaluate()
    assert trainer.model.a.dtype == torch.float16
    assert metrics["eval_loss"] < 0.1


def test_torch_compile(tmp_path):
    trainer = train_regression(tmp_path, torch_compile_backend="eager", max_steps=4)
    assert trainer.model_wrapped is not trainer.model
    assert trainer.model.a.item() != 0.0


def test_a_batch_that_is_one_tensor_is_the_models_one_argument(tmp_path):
    class Tensors(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            return torch.full((3,), float(i))

    class MeanModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))
            self.shapes = []

        def forward(self, x):
            self.shapes.append(tuple(x.shape))
            return ((x * self.w).sum(-1) ** 2).mean()

    model = MeanModel()
    trainer = Trainer(model, regression_args(tmp_path, max_steps=2, per_device_train_batch_size=8),
                      train_dataset=Tensors())
    trainer.train()
    assert model.shapes == [(8, 3), (8, 3)]


def test_gradient_checkpointing_needs_model_support(tmp_path):
    with pytest.raises(ValueError, match="RegressionModel has neither: call torch.utils.checkpoint.checkpoint"):
        Trainer(RegressionModel(), regression_args(tmp_path, gradient_checkpointing=True))
    with pytest.raises(ValueError, match="RegressionModel has neither"):  # a model_init's model: at train()
        Trainer(model_init=RegressionModel, args=regression_args(tmp_path, gradient_checkpointing=True),
                train_dataset=RegressionDataset(8)).train()


def test_auto_find_batch_size_halves_on_oom(tmp_path):
    class OomAbove4(RegressionModel):
        def forward(self, input_x, labels=None):
            if input_x.shape[0] > 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate (simulated)")
            return super().forward(input_x, labels)

    trainer = train_regression(tmp_path, model=OomAbove4(), per_device_train_batch_size=16,
                               auto_find_batch_size=True, max_steps=3)
    assert trainer.state.train_batch_size == 4
    assert trainer.state.global_step == 3


def test_memory_and_speed_metrics(tmp_path):
    mib64 = 64 * 2**20

    def touched_pages(size: int) -> mmap.mmap:
        """Fresh anonymous pages from the OS, every one written: RSS grows by ``size`` whatever the allocator
        kept from earlier tests (a 64 MiB numpy array can land in memory the process already holds)."""
        pages = mmap.mmap(-1, size)
        pages.write(b"\x01" * size)
        return pages

    class Allocates(TrainerCallback):
        """Keeps 64 MiB from the start of training, and holds another 64 MiB for a moment at step 2."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.kept = touched_pages(mib64)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                transient = touched_pages(mib64)
                time.sleep(0.1)  # the sampler looks every 5 ms
                transient.close()

    gc.collect()  # garbage of earlier tests is not freed inside the measured window
    trainer = train_regression(tmp_path, skip_memory_metrics=False, max_steps=4, callbacks=[Allocates()])
    final = trainer.state.log_history[-1]
    assert isinstance(final["train_mem_cpu_alloc_delta"], int)
    assert final["train_mem_cpu_alloc_delta"] >= 0.9 * mib64  # the kept array is still there at the end
    assert final["train_mem_cpu_peaked_delta"] >= 0.9 * mib64  # the transient one was seen, then given back
    assert final["train_samples_per_second"] > 0
    metrics = trainer.predict(RegressionDataset(16)).metrics
    assert "test_mem_cpu_alloc_delta" in metrics and metrics["test_samples_per_second"] > 0


def test_train_needs_dataset_and_model(tmp_path):
    with pytest.raises(ValueError, match="needs a model or a model_init"):
        Trainer(args=regression_args(tmp_path))
    with pytest.raises(ValueError, match=r"pass Trainer\(train_dataset=...\)"):
        Trainer(RegressionModel(), regression_args(tmp_path)).train()


def test_model_without_loss_gets_clear_error(tmp_path):
    class NoLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def forward(self, input_x, labels=None):
            return {"logits": self.lin(input_x.unsqueeze(-1))}

    trainer = Trainer(NoLoss(), regression_args(tmp_path), train_dataset=RegressionDataset())
    with pytest.raises(ValueError, match=r"the model returned no loss \(its outputs: \['logits'\]"):
        trainer.train()


def test_tuple_batches_from_tensor_dataset(tmp_path):
    class XY(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)

        def forward(self, x, y):
            return torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), y)

    x = torch.randn(32, 3)
    data = torch.utils.data.TensorDataset(x, x.sum(-1))
    trainer = Trainer(XY(), regression_args(tmp_path, max_steps=8), train_dataset=data)
    assert trainer.train().training_loss > 0


def test_output_dir_with_checkpoints_is_reused_with_a_warning_or_emptied_with_overwrite(tmp_path, caplog):
    import logging

    train_regression(tmp_path, save_strategy="steps", save_steps=8)
    with caplog.at_level(logging.WARNING, logger="trainer"):
        again = train_regression(tmp_path, save_strategy="steps", save_steps=8, max_steps=4)
    assert again.state.global_step == 4 and "already holds checkpoints of an earlier run" in caplog.text
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-16", "checkpoint-4", "checkpoint-8"]
    trainer = train_regression(tmp_path, save_strategy="steps", save_steps=8, overwrite_output_dir=True, max_steps=8)
    assert trainer.state.global_step == 8
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-8"]


def test_past_index_feeds_mems_back(tmp_path):
    seen, produced = [], []

    class WithMems(RegressionModel):
        def forward(self, input_x, labels=None, mems=None):
            seen.append(mems)
            produced.append(input_x.sum().detach())
            loss, y = super().forward(input_x, labels)
            return loss, y, produced[-1]

    train_regression(tmp_path, model=WithMems(), past_index=2, num_train_epochs=2)  # 8 steps per epoch
    assert len(seen) == 16
    assert seen[0] is None and seen[8] is None  # reset at each epoch start
    for i in list(range(1, 8)) + list(range(9, 16)):
        assert seen[i] is produced[i - 1], i  # the previous step's outputs[past_index]


def test_log_level_sets_package_loggers(tmp_path):
    import logging

    before = {name: logging.getLogger(name).level for name in ("trainer", "callbacks", "transformers")}
    try:
        Trainer(RegressionModel(), regression_args(tmp_path, log_level="info"))
        assert logging.getLogger("trainer").level == logging.INFO
        assert logging.getLogger("transformers").level == logging.INFO
        logging.getLogger("trainer").setLevel(logging.NOTSET)
        Trainer(RegressionModel(), regression_args(tmp_path))  # passive: untouched
        assert logging.getLogger("trainer").level == logging.NOTSET
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def test_dataloader_workers_give_identical_training_and_are_stopped_when_it_ends(tmp_path):
    import multiprocessing

    base = params(train_regression(tmp_path / "w0", dataloader_num_workers=0).model)
    trainer = train_regression(tmp_path / "w2", dataloader_num_workers=2, dataloader_persistent_workers=True)
    workers = params(trainer.model)
    for key in base:
        assert torch.equal(base[key], workers[key]), key
    # the loader's worker processes end with train(), not when the collector frees the loader (5 s each)
    assert multiprocessing.active_children() == []


def test_dataloader_drop_last(tmp_path):
    trainer = train_regression(tmp_path, train_dataset=RegressionDataset(20), dataloader_drop_last=True, num_train_epochs=1)
    assert trainer.state.global_step == 2  # 20 samples, batch 8: the batch of 4 is dropped
    trainer = train_regression(tmp_path / "keep", train_dataset=RegressionDataset(20), num_train_epochs=1)
    assert trainer.state.global_step == 3


def test_bf16_full_eval(tmp_path):
    trainer = Trainer(RegressionModel(a=2.0, b=3.0), regression_args(tmp_path, bf16_full_eval=True),
                      eval_dataset=RegressionDataset(16))
    assert trainer.evaluate()["eval_loss"] < 0.1
    assert trainer.model.a.dtype == torch.bfloat16


def test_iterable_dataset_epoch_counts_passes(tmp_path):
    trainer = train_regression(tmp_path, train_dataset=SampleIterableDataset(64), max_steps=20, logging_steps=4)
    epochs = [e["epoch"] for e in trainer.state.log_history if "loss" in e]
    # 8 batches a pass; a pass is known to be over only when the next fetch finds the stream empty,
    # so the logs at steps 8 and 16 still count the pass they ended
    assert epochs == [0.0, 0.0, 1.0, 1.0, 2.0]  # steps 4, 8, 12, 16, 20


def test_total_flos_from_floating_point_ops_override(tmp_path):
    class Counting(Trainer):
        def floating_point_ops(self, inputs):
            return 10.0 * len(inputs["input_x"])

    trainer = Counting(RegressionModel(), regression_args(tmp_path, max_steps=3), train_dataset=RegressionDataset())
    metrics = trainer.train().metrics
    assert metrics["total_flos"] == 3 * 8 * 10.0 and trainer.state.total_flos == 240.0
    assert train_regression(tmp_path / "plain", max_steps=3).state.total_flos == 0


def test_model_init_gets_the_trial_only_when_it_asks_for_it(tmp_path):
    seen = []

    class Sized(RegressionModel):  # a model class whose one argument has a default
        def __init__(self, a: float = 0.5):
            super().__init__(a=a)
            seen.append(("class", a))

    def with_trial(trial=None):
        seen.append(("function", trial))
        return RegressionModel()

    def required(anything):
        seen.append(("required", anything))
        return RegressionModel()

    for init in (Sized, with_trial, required):
        trainer = Trainer(model_init=init, args=regression_args(tmp_path, max_steps=1))
        trainer.call_model_init("the-trial")
    assert seen[-6:] == [("class", 0.5), ("class", 0.5), ("function", None), ("function", "the-trial"),
                         ("required", None), ("required", "the-trial")]


def test_tokens_are_counted_in_a_mapping_batch(tmp_path):
    """A batch that is a Mapping but not a dict (transformers' BatchEncoding) is read like a dict."""
    from tests.test_evaluation import mapping_collator

    model = RegressionModel()
    model.main_input_name = "input_x"
    trainer = train_regression(tmp_path, model, data_collator=mapping_collator, include_num_input_tokens_seen=True)
    assert trainer.state.num_input_tokens_seen == 128  # 64 samples x 2 epochs, one "token" each


def test_evaluation_during_training_leaves_the_training_unchanged(tmp_path):
    """Dropout and shuffling draw from the random streams: a run that evaluates every 2 steps ends bit-equal to
    the same run without evaluation (building an eval dataloader's iterator drew from the global RNG)."""
    plain = train_regression(tmp_path / "plain", model_init=RegressionDropoutModel, max_steps=12)
    evaluated = train_regression(tmp_path / "evaluated", model_init=RegressionDropoutModel, max_steps=12,
                                 eval_strategy="steps", eval_steps=2, eval_dataset=RegressionDataset(16, seed=3))
    assert any("eval_loss" in e for e in evaluated.state.log_history)
    a, b = params(plain.model), params(evaluated.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
