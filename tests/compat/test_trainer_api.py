"""transformers' Trainer helpers on ours give what they give on transformers' Trainer, side by side."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import trainer as trainforge  # noqa: E402
from tests.fixtures import RegressionDataset, RegressionModel, regression_args  # noqa: E402
from trainer import EarlyStoppingCallback, Trainer, TrainerControl, TrainerState, TrainingArguments  # noqa: E402


def tiny_bert():
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, num_labels=2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


@pytest.fixture
def pair(tmp_path):
    model = tiny_bert()
    values = dict(per_device_train_batch_size=8, gradient_accumulation_steps=2, weight_decay=0.1,
                  learning_rate=1e-3, report_to="none")
    ours = Trainer(model, TrainingArguments(str(tmp_path / "ours"), **values))
    theirs = transformers.Trainer(model, transformers.TrainingArguments(str(tmp_path / "theirs"), use_cpu=True,
                                                                        optim="adamw_torch", **values))
    return ours, theirs


def test_parameters_groups_and_rates(pair):
    ours, theirs = pair
    assert ours.get_decay_parameter_names(ours.model) == theirs.get_decay_parameter_names(theirs.model)
    assert ours.get_num_trainable_parameters() == theirs.get_num_trainable_parameters()
    ours.create_optimizer()
    theirs.create_optimizer()
    assert ours.get_learning_rates() == theirs.get_learning_rates() == [1e-3, 1e-3]
    bias, weight = (dict(ours.model.named_parameters())[n] for n in ("classifier.bias", "classifier.weight"))
    assert ours.get_optimizer_group(bias)["weight_decay"] == ours.get_optimizer_group("classifier.bias")[
        "weight_decay"] == 0.0
    assert ours.get_optimizer_group(weight)["weight_decay"] == 0.1
    # transformers looks the parameter up with `in`, comparing tensors by value: it fails (docs/compat.md)
    with pytest.raises(RuntimeError, match="must match the size"):
        theirs.get_optimizer_group(dict(theirs.model.named_parameters())["classifier.bias"])
    assert len(ours.get_optimizer_group()) == len(theirs.get_optimizer_group()) == 2
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(ours.args)
    assert cls is torch.optim.AdamW and kwargs["lr"] == 1e-3 and kwargs["betas"] == (0.9, 0.999)
    assert ours.get_total_train_batch_size(ours.args) == theirs.get_total_train_batch_size(theirs.args) == 16
    assert isinstance(ours.accelerator, type(theirs.accelerator))


def test_counts_formats_and_batch_samples(tmp_path):
    trainer = Trainer(torch.nn.Linear(1, 1), regression_args(tmp_path))
    loader = torch.utils.data.DataLoader(RegressionDataset(20), batch_size=8)
    assert trainer.num_examples(loader) == 20
    metrics = {"train_runtime": 3725.5, "train_mem_cpu_alloc_delta": 5 << 20, "total_flos": float(3 << 30),
               "eval_loss": 0.123456, "epoch": 2}
    assert Trainer.metrics_format(metrics) == transformers.Trainer.metrics_format(metrics)
    batches = [{"labels": torch.tensor([1, -100, 2])}, {"labels": torch.tensor([-100, 5, 6])},
               {"labels": torch.tensor([7, 8, 9])}]
    taken, items = trainer.get_batch_samples(iter(batches), 2, torch.device("cpu"))
    assert taken == batches[:2] and items is None  # nn.Linear's forward takes no num_items_in_batch

    class Counts(torch.nn.Linear):
        def forward(self, input_x=None, labels=None, num_items_in_batch=None):
            return super().forward(input_x)

    trainer = Trainer(Counts(1, 1), regression_args(tmp_path))
    taken, items = trainer.get_batch_samples(iter(batches), 5, torch.device("cpu"))
    assert taken == batches and int(items) == 7  # every micro-batch the iterator had, its labels not -100
    with trainer.compute_loss_context_manager():
        pass


def test_state_and_early_stopping_as_transformers_has_them():
    assert TrainerState().epoch == transformers.TrainerState().epoch == 0
    args = TrainingArguments("unused", logging_steps=0.1, eval_steps=0.25, save_steps=30, report_to="none")
    state = TrainerState()
    state.compute_steps(args, 200)
    assert (state.logging_steps, state.eval_steps, state.save_steps) == (20, 50, 30)
    early = EarlyStoppingCallback(early_stopping_patience=2)
    args = TrainingArguments("unused", metric_for_best_model="loss", report_to="none")
    for value, counter in ((1.0, 0), (1.1, 1), (0.5, 0), (0.7, 1)):
        early.check_metric_value(args, state, TrainerControl(), value)
        assert early.early_stopping_patience_counter == counter


def test_transformers_arguments_are_converted_with_one_warning(tmp_path, caplog):
    import logging

    from tests.fixtures import RegressionModel

    theirs = transformers.TrainingArguments(str(tmp_path), max_steps=3, learning_rate=0.05, report_to="none",
                                            logging_steps=1, warmup_steps=0.5, lr_scheduler_type="cosine")
    with caplog.at_level(logging.WARNING, logger="trainer"):
        trainer = Trainer(RegressionModel(), theirs, train_dataset=RegressionDataset())
    warned = [r.getMessage() for r in caplog.records if "converted to trainforge's TrainingArguments" in r.getMessage()]
    assert len(warned) == 1 and "Trainer got transformers' TrainingArguments" in warned[0]
    args = trainer.args
    assert isinstance(args, TrainingArguments) and args is not theirs
    assert (args.max_steps, args.learning_rate, args.lr_scheduler_type, args.optim) == (3, 0.05, "cosine",
                                                                                         "adamw_torch_fused")
    assert args.warmup_steps == 0.5 and args.get_warmup_steps(10) == 5  # transformers 5's ratio, taken as is
    assert trainer.train().global_step == 3
    with pytest.raises(TypeError, match="args must be a trainer.TrainingArguments, got dict"):
        Trainer(RegressionModel(), {"output_dir": str(tmp_path)})


@pytest.mark.parametrize("name, kwargs", [
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", {"min_lr": 0.05, "warmup_lr_rate": 0.2}),
    ("warmup_stable_decay", {"num_decay_steps": 8}),
    ("warmup_stable_decay", {"num_decay_steps": 6, "num_stable_steps": 5, "warmup_type": "cosine",
                             "decay_type": "1-sqrt", "min_lr_ratio": 0.1}),
])
def test_transformers_5_schedules_give_its_rates_step_by_step(name, kwargs):
    import warnings

    from transformers.optimization import get_scheduler as their_scheduler

    from trainer.optim import get_scheduler

    def rates(make) -> list[float]:
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([param], lr=1.0)
        scheduler, out = make(optimizer), []
        for _ in range(20):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = rates(lambda o: their_scheduler(name, o, num_warmup_steps=4, num_training_steps=20,
                                                 scheduler_specific_kwargs=kwargs))
    assert rates(lambda o: get_scheduler(name, o, 4, 20, kwargs)) == pytest.approx(theirs, abs=1e-12)


def test_the_greedy_schedule_is_stepped_with_the_evaluation_metric(tmp_path):
    from tests.fixtures import RegressionModel

    args = regression_args(tmp_path, max_steps=8, eval_strategy="steps", eval_steps=2, lr_scheduler_type="greedy",
                           metric_for_best_model="loss")
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), eval_dataset=RegressionDataset(16))
    steps = []
    make = trainer.create_scheduler  # train() makes the scheduler: record the calls of its step()

    def record(*args, **kwargs):
        scheduler = make(*args, **kwargs)
        real = scheduler.step
        scheduler.step = lambda *m, **n: (steps.append(m), real(*m, **n))[1]
        return scheduler

    trainer.create_scheduler = record
    trainer.train()
    assert type(trainer.lr_scheduler).__name__ == "GreedyLR"
    assert len(steps) == 4 and all(len(m) == 1 and isinstance(m[0], float) for m in steps)  # one per evaluation


@pytest.mark.parametrize("values", [dict(num_train_epochs=2.5), dict(max_steps=7), dict(max_steps=7, num_train_epochs=1)],
                         ids=["epochs", "max_steps", "both"])
def test_initial_training_values_and_parallel_sizes_as_transformers(tmp_path, values):
    common = dict(per_device_train_batch_size=8, gradient_accumulation_steps=2, report_to="none", **values)
    ours = Trainer(torch.nn.Linear(1, 1), TrainingArguments(str(tmp_path / "ours"), **common))
    theirs = transformers.Trainer(torch.nn.Linear(1, 1), transformers.TrainingArguments(str(tmp_path / "theirs"),
                                                                                        use_cpu=True, **common))
    loader = torch.utils.data.DataLoader(RegressionDataset(44), batch_size=8)  # 6 batches: 3 steps an epoch
    assert ours.set_initial_training_values(ours.args, loader) == theirs.set_initial_training_values(theirs.args,
                                                                                                     loader)
    assert (ours.get_tp_size(), ours.get_cp_size(), ours.get_sp_size()) == (
        theirs.get_tp_size(), theirs.get_cp_size(), theirs.get_sp_size()) == (1, 1, 1)
    assert ours.hub_model_id is theirs.hub_model_id is None  # no push_to_hub: no repo
    skipped = ours.get_resumed_dataloader(loader, 4)
    assert len(skipped) == 2 and [b["input_x"].tolist() for b in skipped] == [b["input_x"].tolist()
                                                                              for b in list(loader)[4:]]
    ours.end()  # nothing to tear down in one process


def test_memory_metrics_have_transformers_keys_and_are_not_logged_by_evaluate(tmp_path):
    keys = {}
    for lib in (transformers, trainforge):
        values = dict(output_dir=str(tmp_path / lib.__name__), skip_memory_metrics=False, report_to="none",
                      disable_tqdm=True, max_steps=4, logging_steps=2)
        if lib is transformers:
            values["use_cpu"] = True
        run = lib.Trainer(RegressionModel(), lib.TrainingArguments(**values), train_dataset=RegressionDataset(32),
                          eval_dataset=RegressionDataset(8))
        train = run.train().metrics
        train.pop("total_flos", None)  # transformers' PrinterCallback pops it out of the metrics (docs/compat.md)
        keys[lib] = (set(train), set(run.evaluate()), set(run.state.log_history[-1]),
                     set(run.predict(RegressionDataset(8)).metrics))
    ours = keys[trainforge]
    assert ours == keys[transformers]
    assert {"init_mem_cpu_alloc_delta", "before_init_mem_cpu", "train_mem_cpu_peaked_delta"} <= ours[0]
    assert "eval_mem_cpu_alloc_delta" in ours[1] and "eval_mem_cpu_alloc_delta" not in ours[2]  # returned, not logged


def test_label_smoothing_is_not_applied_to_a_multi_label_classifier_with_a_warning(tmp_path):
    model = tiny_bert()
    model.config.problem_type = "multi_label_classification"
    with pytest.warns(UserWarning, match=r"label_smoothing_factor=0.1 is not applied: the model is a multi-label "
                                         r"classifier .* set label_smoothing_factor=0 to silence this"):
        ours = Trainer(model, TrainingArguments(str(tmp_path / "ours"), label_smoothing_factor=0.1))
    with pytest.warns(UserWarning, match="Label smoothing is not compatible with multi-label classification"):
        theirs = transformers.Trainer(model, transformers.TrainingArguments(str(tmp_path / "theirs"), use_cpu=True,
                                                                            label_smoothing_factor=0.1))
    assert ours.label_smoother is None and theirs.label_smoother is None
    model.config.problem_type = "single_label_classification"
    assert Trainer(model, TrainingArguments(str(tmp_path / "ours"), label_smoothing_factor=0.1)).label_smoother


class Batches:
    """A train "dataloader" of a custom get_train_dataloader: batches of 4, a length, no .dataset, no state_dict."""

    def __init__(self, n: int):
        self.n, self.data = n, RegressionDataset(4 * n)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            samples = [self.data[j] for j in range(4 * i, 4 * i + 4)]
            yield {key: torch.tensor([s[key] for s in samples]) for key in samples[0]}


def test_a_custom_train_dataloader_without_a_dataset_trains_saves_and_resumes_exactly(tmp_path, caplog):
    def run(lib, output_dir, resume=None):
        class Custom(lib.Trainer):
            def get_train_dataloader(self):
                return Batches(5)

        values = dict(output_dir=str(output_dir), report_to="none", disable_tqdm=True, num_train_epochs=2,
                      save_strategy="steps", save_steps=3, optim="sgd", learning_rate=0.05)
        if lib is transformers:
            values["use_cpu"] = True
        trainer = Custom(RegressionModel(), lib.TrainingArguments(**values), train_dataset=RegressionDataset(8))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    theirs = run(transformers, tmp_path / "theirs")
    straight = run(trainforge, tmp_path / "ours")
    assert straight.state.global_step == theirs.state.global_step == 10
    for mine, their_param in zip(straight.model.parameters(), theirs.model.parameters()):
        torch.testing.assert_close(mine, their_param, rtol=1e-6, atol=0)
    with caplog.at_level("WARNING", logger="trainer"):
        resumed = run(trainforge, tmp_path / "resumed", resume=str(tmp_path / "ours" / "checkpoint-3"))
    assert "the epoch's first 3 batches are read and dropped" in caplog.text
    for mine, straight_param in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(mine, straight_param)
    assert trainforge.Trainer(RegressionModel(), regression_args(tmp_path), train_dataset=RegressionDataset(20)
                              ).get_train_dataloader().total_batch_size == 8  # per device x processes


def test_early_stopping_threshold_counts_from_the_last_real_improvement_where_transformers_stops(caplog):
    """A loss improving by 0.05 per evaluation with threshold 0.08: it improves by 0.1 every two evaluations, so
    ours goes on; transformers compares with state.best_metric, which follows every small step, and stops."""
    args = TrainingArguments("unused", metric_for_best_model="loss", report_to="none")
    counters = {}
    for lib in (transformers, trainforge):
        early = lib.EarlyStoppingCallback(early_stopping_patience=2, early_stopping_threshold=0.08)
        state, seen = lib.TrainerState(), []
        for value in (1.0, 0.95, 0.90, 0.85, 0.80):
            early.check_metric_value(args, state, lib.TrainerControl(), value)
            seen.append(early.early_stopping_patience_counter)
            state.best_metric = value if state.best_metric is None else min(state.best_metric, value)  # as Trainers do
        counters[lib] = seen
    assert counters[transformers][:3] == [0, 1, 2]  # patience 2 reached at the third evaluation: stopped
    assert counters[trainforge] == [0, 1, 0, 1, 0]  # each 0.1 gain resets the count


def test_a_bus_without_the_flow_callback_warns(caplog):
    from callbacks import CallbackHandler, ProgressCallback

    with caplog.at_level("WARNING"):
        CallbackHandler([ProgressCallback()])
    assert "no DefaultFlowCallback" in caplog.text


def test_compute_loss_func_and_optimizer_cls_and_kwargs_train_as_in_transformers(tmp_path):
    """A loss function given the step's label count (a sum over it: exact across accumulation) and an optimizer
    class with its arguments: the same weights as transformers' Trainer trains to."""
    def squared_error(outputs, labels, num_items_in_batch=None):
        return ((outputs[0] - labels) ** 2).sum() / num_items_in_batch

    weights = {}
    for lib in (transformers, trainforge):
        values = dict(output_dir=str(tmp_path / lib.__name__), per_device_train_batch_size=4,
                      gradient_accumulation_steps=3, max_steps=5, report_to="none", disable_tqdm=True,
                      train_sampling_strategy="sequential", save_strategy="no", lr_scheduler_type="constant")
        if lib is transformers:
            values["use_cpu"] = True
        trainer = lib.Trainer(RegressionModel(), lib.TrainingArguments(**values), train_dataset=RegressionDataset(44),
                              compute_loss_func=squared_error,
                              optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}))
        trainer.train()
        assert isinstance(getattr(trainer.optimizer, "optimizer", trainer.optimizer), torch.optim.SGD)
        weights[lib] = (trainer.model.a.item(), trainer.model.b.item())
    assert weights[trainforge] == pytest.approx(weights[transformers], rel=1e-6)
    assert weights[trainforge] != pytest.approx((0.0, 0.0))


def test_token_counts_and_rates_are_logged_with_transformers_keys(tmp_path):
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16)
    data = [{"input_ids": torch.arange(i, i + 8) % 50, "labels": torch.arange(i, i + 8) % 50} for i in range(16)]
    logs, returned = {}, {}
    for lib in (transformers, trainforge):
        values = dict(output_dir=str(tmp_path / lib.__name__), report_to="none", disable_tqdm=True, max_steps=4,
                      logging_steps=2, eval_strategy="steps", eval_steps=2, per_device_train_batch_size=4,
                      include_num_input_tokens_seen=True, save_strategy="no")
        if lib is transformers:
            values["use_cpu"] = True
        torch.manual_seed(0)
        run = lib.Trainer(transformers.GPT2LMHeadModel(config), lib.TrainingArguments(**values), train_dataset=data,
                          eval_dataset=data[:4])
        train = run.train().metrics
        train.pop("total_flos", None)  # transformers' PrinterCallback pops it out of the metrics (docs/compat.md)
        logs[lib] = [(list(h), h["step"], h["num_input_tokens_seen"]) for h in run.state.log_history]
        returned[lib] = (list(train), list(run.evaluate()))
    assert logs[trainforge] == logs[transformers]
    assert logs[trainforge][0] == (["loss", "grad_norm", "learning_rate", "epoch", "num_input_tokens_seen",
                                    "train_runtime", "train_tokens_per_second", "step"], 2, 64)
    assert returned[trainforge] == returned[transformers]
    assert returned[trainforge][1][-2:] == ["epoch", "num_input_tokens_seen"]


@pytest.mark.parametrize("values, layers", [
    (dict(gradient_checkpointing=True), [True] * 4),
    (dict(activation_checkpointing=True, activation_checkpointing_kwargs={"every_n_layers": 2}),
     [True, False, True, False]),
    (dict(activation_checkpointing=False, gradient_checkpointing=True), [False] * 4),  # the new name, set, wins
    (dict(gradient_checkpointing=True, gradient_checkpointing_kwargs='{"every_n_layers": 3, "use_reentrant": false}'),
     [True, False, False, True]),
], ids=["old-name", "new-name-every-2", "new-name-wins", "old-kwargs-json"])
def test_activation_checkpointing_names_and_layers_as_transformers(tmp_path, values, layers):
    config = transformers.GPT2Config(n_layer=4, n_embd=16, n_head=2, vocab_size=50, n_positions=16, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    data = [{"input_ids": torch.arange(i, i + 8) % 50, "labels": torch.arange(i, i + 8) % 50} for i in range(8)]
    seen = {}
    for lib in (transformers, trainforge):
        common = dict(output_dir=str(tmp_path / lib.__name__), report_to="none", disable_tqdm=True, max_steps=2,
                      per_device_train_batch_size=4, save_strategy="no", learning_rate=1e-3)
        if lib is transformers:
            common["use_cpu"] = True
        args = lib.TrainingArguments(**common, **values)
        torch.manual_seed(0)
        run = lib.Trainer(transformers.GPT2LMHeadModel(config), args, train_dataset=data)
        loss = run.train().training_loss
        seen[lib] = (args.gradient_checkpointing, args.activation_checkpointing, args.activation_checkpointing_kwargs,
                     [block.gradient_checkpointing for block in run.model.transformer.h])
        seen[lib, "loss"] = loss
    assert seen[trainforge] == seen[transformers]
    assert seen[trainforge][3] == layers
    # transformers normalizes a causal LM's update by the unshifted label count (docs/compat.md): 7 of 8 targets
    assert seen[trainforge, "loss"] == pytest.approx(seen[transformers, "loss"] * 8 / 7, rel=1e-5)


def test_activation_checkpointing_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"gradient_checkpointing=True needs a model with activation_checkpointing_"
                                         r"enable\(\) or gradient_checkpointing_enable\(\) \(a transformers model\); "
                                         r"RegressionModel has neither"):  # transformers' name: the same check
        Trainer(RegressionModel(), regression_args(tmp_path, activation_checkpointing=True))
    with pytest.raises(ValueError, match=r"fsdp_config\['activation_checkpointing'\] and gradient_checkpointing "
                                         r"\(activation_checkpointing\) are both set"):
        regression_args(tmp_path, fsdp="full_shard", fsdp_config={"activation_checkpointing": True},
                        gradient_checkpointing=True)
    from integrations.fsdp import recompute_units

    with pytest.raises(ValueError, match=r"has none besides the root: name them with fsdp_config\["
                                         r"'transformer_layer_cls_to_wrap'\]"):
        recompute_units([])
