"""Bad inputs and the error each gets: the rows of docs/errors.md.

Every case runs in ``tests/test_errors.py``, which asserts the exception type and that ``message`` is in
its text (its notes included); ``python docs/make_errors.py`` writes the table from this list and a test
checks the page is current. A trigger takes a temporary directory and does the one wrong thing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tests.fixtures import (
    RegressionDataset,
    RegressionModel,
    SampleIterableDataset,
    regression_args,
    regression_trainer,
)


class LoggedWarning(Warning):
    """The error column of a case that is not raised: the run goes on and the message is logged as a
    warning on the ``trainer`` logger (the table says ``warning``)."""


@dataclasses.dataclass
class ErrorCase:
    area: str
    bad_input: str
    error: type
    message: str  # a literal part of the error text, shown in the table
    trigger: Callable[[Path], object]


def _args(**overrides):
    from trainer import TrainingArguments

    return TrainingArguments(**{"output_dir": "unused", "report_to": "none", **overrides})


def _train(tmp: Path, model=None, dataset=None, **overrides):
    from trainer import Trainer

    trainer = Trainer(model or RegressionModel(), regression_args(tmp, **overrides),
                      train_dataset=RegressionDataset() if dataset is None else dataset)
    trainer.train()
    return trainer


def _checkpointed(tmp: Path, **overrides) -> Path:
    """A run that saved checkpoint-4 and checkpoint-8; returns output_dir."""
    _train(tmp, max_steps=8, save_strategy="steps", save_steps=4, num_train_epochs=1, **overrides)
    return tmp / "out"


def _resume(tmp: Path, **overrides):

    trainer = regression_trainer(tmp, max_steps=12, **overrides)
    return trainer.train(resume_from_checkpoint=True)


def _config(tmp: Path, text: str):
    from trainer import TrainingArguments
    from trainer.argparsing import DataclassArgumentParser

    path = tmp / "run.yaml"
    path.write_text(text)
    return DataclassArgumentParser(TrainingArguments).parse([str(path)])


def _plot(tmp: Path, smooth: float):
    from trainer.run_files import plot_curves

    return plot_curves([{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}], str(tmp / "curves.png"), smooth=smooth)


# -- triggers that need more than one line -------------------------------------------------------
class _NoLossModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, input_x, labels=None):
        return {"logits": self.linear(input_x.unsqueeze(-1))}


def _without_labels(tmp: Path):
    class Unlabelled(RegressionDataset):
        def __getitem__(self, i):
            return {"input_x": self.x[i]}

    return _train(tmp, dataset=Unlabelled(), max_steps=1)


def _all_columns_removed(tmp: Path):
    import datasets

    data = datasets.Dataset.from_dict({"text": ["a", "b"], "score": [1.0, 2.0]})
    return _train(tmp, dataset=data, max_steps=1)


def _output_dir_is_file(tmp: Path):

    (tmp / "out").write_text("not a directory")
    regression_trainer(tmp).train()


def _output_dir_not_writable(tmp: Path):

    if os.geteuid() == 0:  # root writes through file modes: use a filesystem nobody may write to
        out = "/sys/trainforge-output"
    else:
        (tmp / "locked").mkdir()
        (tmp / "locked").chmod(0o500)
        out = str(tmp / "locked" / "out")
    regression_trainer(tmp, output_dir=out).train()


def _existing_checkpoints(tmp: Path):
    _checkpointed(tmp)
    return _train(tmp, max_steps=2)


def _corrupt(name: str, damage: Callable[[Path], None]):
    def trigger(tmp: Path):
        out = _checkpointed(tmp)
        damage(out / "checkpoint-8" / name)
        return _resume(tmp)

    return trigger


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _metrics_not_a_dict(tmp: Path):
    from trainer import Trainer

    trainer = Trainer(RegressionModel(), regression_args(tmp), eval_dataset=RegressionDataset(16),
                      compute_metrics=lambda p: float(p.predictions[0].mean()))
    return trainer.evaluate()


def _missing_best_metric(tmp: Path):
    from trainer import Trainer

    args = regression_args(tmp, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2, max_steps=2,
                           load_best_model_at_end=True, metric_for_best_model="accuracy")
    Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), eval_dataset=RegressionDataset(16)).train()


def _no_eval_dataset(tmp: Path):
    return _train(tmp, eval_strategy="steps", eval_steps=2, max_steps=2)


class _LossOnlyModel(RegressionModel):
    def forward(self, input_x, labels=None):
        return {"loss": super().forward(input_x, labels)[0]}


def _evaluate(tmp: Path, model=None, **overrides):
    from trainer import Trainer

    trainer = Trainer(model or RegressionModel(), regression_args(tmp, **overrides), eval_dataset=RegressionDataset(16),
                      compute_metrics=lambda p: {"mean": float(p.predictions.mean())})
    return trainer.evaluate()


class _Frozen(RegressionModel):
    def __init__(self):
        super().__init__()
        self.requires_grad_(False)


class _NoParameters(nn.Module):
    def forward(self, input_x, labels=None):
        return ((input_x - labels) ** 2).mean().requires_grad_()


class _FloatLoss(RegressionModel):
    def forward(self, input_x, labels=None):
        return (super().forward(input_x, labels)[0].item(),)


class _Ints(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return i


class _Ragged(RegressionDataset):
    def __getitem__(self, i):
        return {"input_x": list(range(i % 3 + 1)), "labels": 1.0}


class _Named(RegressionDataset):
    def __getitem__(self, i):
        return {**super().__getitem__(i), "name": f"sample {i}"}


class _NeedsName(RegressionModel):
    def forward(self, input_x, name, labels=None):
        return super().forward(input_x, labels)


def _search_without_model_init(tmp: Path):

    regression_trainer(tmp).hyperparameter_search(
                       n_trials=1)


def _no_model(tmp: Path):
    from trainer import Trainer

    Trainer(args=regression_args(tmp))


def _not_a_callback(tmp: Path):
    from trainer import Trainer

    Trainer(RegressionModel(), regression_args(tmp), callbacks=[print])


def _raising_callback(tmp: Path):
    from trainer import TrainerCallback

    class FailsAtStep6(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise KeyError("missing_metric")

    from trainer import Trainer

    args = regression_args(tmp, max_steps=8, save_strategy="steps", save_steps=4)
    Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), callbacks=[FailsAtStep6()]).train()


class _OomAbove4(RegressionModel):
    def forward(self, input_x, labels=None):
        if input_x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().forward(input_x, labels)


class _NanAfter(RegressionModel):
    def __init__(self, step: int):
        super().__init__()
        self.calls, self.step = 0, step

    def forward(self, input_x, labels=None):
        self.calls += 1
        loss, y = super().forward(input_x, labels)
        return (loss * float("nan") if self.calls >= self.step else loss), y


def _deepspeed_conflict(tmp: Path):
    from trainer import Trainer

    config = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 2}}
    Trainer(RegressionModel(), regression_args(tmp, deepspeed=json.dumps(config), per_device_train_batch_size=8))


def _log_an_object(tmp: Path):
    from trainer import TrainerCallback

    class LogsAnObject(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                state.log_history.append({"x": object(), "step": 0})

    regression_trainer(tmp, save_strategy="steps", save_steps=2, max_steps=2, callbacks=[LogsAnObject()]).train()


CASES: list[ErrorCase] = [
    # TrainingArguments: types and values
    ErrorCase("arguments", "`learning_rate=\"1e-4\"` (a string)", ValueError,
              "learning_rate='1e-4' must be a number, not str: pass learning_rate=0.0001",
              lambda tmp: _args(learning_rate="1e-4")),
    ErrorCase("arguments", "`per_device_train_batch_size=8.5`", ValueError,
              "per_device_train_batch_size=8.5 must be an integer, not float",
              lambda tmp: _args(per_device_train_batch_size=8.5)),
    ErrorCase("arguments", "`bf16=\"yes\"`", ValueError, "bf16='yes' must be True or False, not str",
              lambda tmp: _args(bf16="yes")),
    ErrorCase("arguments", "`learning_rate=-1`", ValueError, "learning_rate=-1 must be >= 0",
              lambda tmp: _args(learning_rate=-1)),
    ErrorCase("arguments", "`learning_rate=float(\"nan\")`", ValueError, "learning_rate=nan must be >= 0 and finite",
              lambda tmp: _args(learning_rate=float("nan"))),
    ErrorCase("arguments", "`per_device_train_batch_size=0`", ValueError,
              "per_device_train_batch_size=0 must be a whole number >= 1",
              lambda tmp: _args(per_device_train_batch_size=0)),
    ErrorCase("arguments", "`max_steps=0`", ValueError,
              "max_steps=0 must be a positive number of steps, or -1 to use num_train_epochs",
              lambda tmp: _args(max_steps=0)),
    ErrorCase("arguments", "`eval_strategy=\"sometimes\"`", ValueError,
              "eval_strategy='sometimes' is not valid; choose from ['no', 'steps', 'epoch']",
              lambda tmp: _args(eval_strategy="sometimes")),
    ErrorCase("arguments", "`warmup_ratio=1.5`", ValueError,
              "warmup_ratio=1.5 must be in [0, 1]: it is a fraction of the total steps",
              lambda tmp: _args(warmup_ratio=1.5)),
    ErrorCase("arguments", "`optim=\"adam\"`", ValueError, "optim='adam' is not a known optimizer; choose from: "
              "adamw_torch, adamw_torch_fused", lambda tmp: _args(optim="adam")),
    ErrorCase("arguments", "`optim=\"galore_adamw\"` without `optim_target_modules`", ValueError,
              "optim='galore_adamw' projects the weights of the linear layers optim_target_modules names: set "
              "optim_target_modules", lambda tmp: _args(optim="galore_adamw")),
    ErrorCase("arguments", "`optim=\"galore_adamw_layerwise\"`", NotImplementedError,
              "optim='galore_adamw_layerwise' (galore-torch) is not supported: the layer-wise variant steps each "
              "parameter from a gradient hook", lambda tmp: _args(optim="galore_adamw_layerwise")),
    ErrorCase("arguments", "`report_to=[\"neptune\"]` without the neptune package", ImportError,
              "report_to includes 'neptune' (its callback is transformers' NeptuneCallback) but the 'neptune' "
              "package is not installed: pip install neptune", lambda tmp: regression_trainer(tmp, report_to=["neptune"])),
    ErrorCase("arguments", "`lr_scheduler_type=\"warmup\"`", ValueError,
              "lr_scheduler_type='warmup' is not a known schedule; choose from: linear",
              lambda tmp: _args(lr_scheduler_type="warmup")),
    ErrorCase("arguments", "`fp16=True, bf16=True`", ValueError,
              "fp16=True and bf16=True were both set: choose one mixed precision mode",
              lambda tmp: _args(fp16=True, bf16=True)),
    ErrorCase("arguments", "`report_to=\"tensorbord\"` (misspelt)", ValueError,
              "unknown backend(s) ['tensorbord']", lambda tmp: _args(report_to="tensorbord")),
    ErrorCase("arguments", "`nonfinite_loss=\"halt\"`", ValueError,
              "nonfinite_loss='halt' is not valid; choose from ['ignore', 'skip', 'stop']",
              lambda tmp: _args(nonfinite_loss="halt")),
    ErrorCase("arguments", "`load_best_model_at_end=True` with `eval_strategy=\"steps\"`, `save_strategy=\"epoch\"`",
              ValueError, "load_best_model_at_end=True requires save_strategy to match eval_strategy",
              lambda tmp: _args(load_best_model_at_end=True, eval_strategy="steps", eval_steps=10,
                                save_strategy="epoch")),
    ErrorCase("arguments", "`load_best_model_at_end=True`, `save_steps=15`, `eval_steps=10`", ValueError,
              "load_best_model_at_end=True requires save_steps to be a multiple of eval_steps",
              lambda tmp: _args(load_best_model_at_end=True, eval_strategy="steps", eval_steps=10, save_steps=15)),
    ErrorCase("arguments", "`load_best_model_at_end=True` with `eval_strategy=\"no\"`", ValueError,
              "but eval_strategy='no': set eval_strategy='steps' or 'epoch'",
              lambda tmp: _args(load_best_model_at_end=True)),
    ErrorCase("arguments", "`deepspeed=...` and `fsdp=\"full_shard\"` together", ValueError,
              "deepspeed and fsdp were both set: choose one way to shard the training",
              lambda tmp: _args(deepspeed="{}", fsdp="full_shard")),
    ErrorCase("arguments", "DeepSpeed config `train_micro_batch_size_per_gpu: 4` with `per_device_train_batch_size=8`",
              ValueError, "train_micro_batch_size_per_gpu=4 but per_device_train_batch_size=8",
              _deepspeed_conflict),
    # config files
    ErrorCase("config", "`learning_rat: 0.1` in a config (misspelt key)", ValueError,
              "'learning_rat' (did you mean 'learning_rate'?)", lambda tmp: _config(tmp, "learning_rat: 0.1\n")),
    ErrorCase("config", "`num_train_epochs: three` in a config", ValueError, "num_train_epochs: 'three' in",
              lambda tmp: _config(tmp, "num_train_epochs: three\n")),
    ErrorCase("config", "a config that is not valid YAML", ValueError, "is not valid YAML",
              lambda tmp: _config(tmp, "{: broken\n")),
    ErrorCase("config", "`learning_rate: -1` in a config (a value TrainingArguments refuses)", ValueError,
              "learning_rate=-1 must be >= 0 (the values of", lambda tmp: _config(tmp, "learning_rate: -1\n")),
    ErrorCase("config", "`trainforge plot DIR --smooth 1.5`", ValueError,
              "smooth=1.5 must be in [0, 1): the weight of the past in the moving average",
              lambda tmp: _plot(tmp, smooth=1.5)),
    # model and data
    ErrorCase("model", "no model and no `model_init`", ValueError, "needs a model or a model_init", _no_model),
    ErrorCase("model", "a forward that returns no loss although labels are in the batch", ValueError,
              "the model returned no loss (its outputs: ['logits']; its inputs: ['input_x', 'labels']): make forward() "
              "return the loss when it gets labels (first, or under 'loss' in a dict), set label_names if the model "
              "takes its labels under another name, or override Trainer.compute_loss",
              lambda tmp: _train(tmp, model=_NoLossModel(), max_steps=1)),
    ErrorCase("model", "a model whose parameters are all frozen (`requires_grad=False`)", ValueError,
              "_Frozen has no trainable parameter: all 2 have requires_grad=False (frozen); unfreeze those to train "
              "(param.requires_grad_(True)) or add an adapter (peft.get_peft_model(model, config))",
              lambda tmp: _train(tmp, model=_Frozen(), max_steps=1)),
    ErrorCase("model", "a model without parameters", ValueError,
              "_NoParameters has no parameters, so training has nothing to update",
              lambda tmp: _train(tmp, model=_NoParameters(), max_steps=1)),
    ErrorCase("model", "a loss returned as a Python float (`loss.item()`)", TypeError,
              "not a tensor, so it has no gradient to train with: return the loss tensor itself from forward() or "
              "compute_loss, without .item() or float()", lambda tmp: _train(tmp, model=_FloatLoss(), max_steps=1)),
    ErrorCase("model", "a `forward()` argument the batch lacks (a string field the collator drops)", TypeError,
              "_NeedsName.forward() requires ['name'], which the batch lacks (batch keys ['input_x', 'labels']): the "
              "default data collator drops fields that hold strings or None",
              lambda tmp: _train(tmp, model=_NeedsName(), dataset=_Named(), max_steps=1)),
    ErrorCase("data", "a `DataLoader` passed as `train_dataset`", TypeError,
              "train_dataset is a DataLoader, and the Trainer builds its dataloaders itself: pass its dataset "
              "(train_dataset=loader.dataset) with per_device_train_batch_size=loader.batch_size",
              lambda tmp: _train(tmp, dataset=torch.utils.data.DataLoader(RegressionDataset(), batch_size=4))),
    ErrorCase("data", "a dataset of ints", TypeError,
              "the default data collator got samples of type int", lambda tmp: _train(tmp, dataset=_Ints(), max_steps=1)),
    ErrorCase("data", "samples of different lengths and no padding collator", ValueError,
              "the default data collator cannot make one tensor of the field 'input_x': its samples differ in length",
              lambda tmp: _train(tmp, dataset=_Ragged(), max_steps=1)),
    ErrorCase("data", "a dataset without the label column", ValueError,
              "the batch has no ['labels'] (label_names=['labels']; batch keys ['input_x'])", _without_labels),
    ErrorCase("data", "an empty training dataset", ValueError, "the training dataloader has no batch: 0 samples",
              lambda tmp: _train(tmp, dataset=RegressionDataset(0))),
    ErrorCase("data", "batch size larger than the dataset with `dataloader_drop_last=True`", ValueError,
              "the training dataloader has no batch: 4 samples, batch size 8, dataloader_drop_last=True",
              lambda tmp: _train(tmp, dataset=RegressionDataset(4), dataloader_drop_last=True)),
    ErrorCase("data", "an `IterableDataset` without `max_steps`", ValueError,
              "the training dataset has no length (an IterableDataset), so the number of steps is unknown: set "
              "TrainingArguments(max_steps=N)", lambda tmp: _train(tmp, dataset=SampleIterableDataset())),
    ErrorCase("data", "`remove_unused_columns=True` removing every column", ValueError,
              "remove_unused_columns=True would remove every column: none of the dataset's columns ['text', 'score'] "
              "is an argument of the model's forward() ['input_x', 'label', 'label_ids', 'labels']",
              _all_columns_removed),
    # output_dir and checkpoints
    ErrorCase("output_dir", "`output_dir` is a file", ValueError, "is a file, not a directory: choose another "
              "output_dir", _output_dir_is_file),
    ErrorCase("output_dir", "`output_dir` not writable", ValueError, "is not writable", _output_dir_not_writable),
    ErrorCase("output_dir", "`output_dir` holds checkpoints, `overwrite_output_dir=False`, no resume", LoggedWarning,
              "already holds checkpoints of an earlier run (checkpoint-4, checkpoint-8): this run starts over beside "
              "them, as resume_from_checkpoint was not given", _existing_checkpoints),
    ErrorCase("resume", "`resume_from_checkpoint=True` with no checkpoint in `output_dir`", ValueError,
              "holds no complete checkpoint", lambda tmp: _resume(tmp)),
    ErrorCase("resume", "`resume_from_checkpoint` naming a folder that does not exist", FileNotFoundError,
              "no such directory", lambda tmp: _train(tmp, resume_from_checkpoint=str(tmp / "nowhere"))),
    ErrorCase("resume", "a corrupted `trainer_state.json`", ValueError,
              "checkpoint-8/trainer_state.json is damaged (Expecting value: line 1 column 1 (char 0)): this "
              "checkpoint cannot be resumed", _corrupt("trainer_state.json", lambda p: p.write_text("garbage"))),
    ErrorCase("resume", "a truncated `model.safetensors`", ValueError,
              "checkpoint-8/model.safetensors is damaged or truncated", _corrupt("model.safetensors", _truncate)),
    ErrorCase("resume", "a truncated `optimizer.pt`", ValueError,
              "checkpoint-8/optimizer.pt is damaged or truncated", _corrupt("optimizer.pt", _truncate)),
    ErrorCase("resume", "a damaged checkpoint when an earlier one is intact", ValueError,
              "resume from an earlier one: resume_from_checkpoint=", _corrupt("model.safetensors", _truncate)),
    ErrorCase("resume", "resuming with another `optim` than the checkpoint's (`adamw_torch` -> `sgd`)", ValueError,
              "the optimizer state was saved by optim='adamw_torch' (its hyperparameters ['amsgrad', 'betas', "
              "'capturable', 'decoupled_weight_decay', 'eps'] are not SGD's), and this run builds SGD (optim='sgd'): "
              "resume with optim='adamw_torch' as it was saved, or set resume_weights_only=True to keep the weights, "
              "step and schedule and start SGD afresh", lambda tmp: (_checkpointed(tmp), _resume(tmp, optim="sgd"))),
    ErrorCase("resume", "a missing `optimizer.pt`", ValueError,
              "set resume_weights_only=True to resume from its weights, step and schedule position with a fresh "
              "optimizer", _corrupt("optimizer.pt", os.remove)),
    # evaluation
    ErrorCase("evaluation", "`compute_metrics` returning a float", TypeError, "compute_metrics must return a dict",
              _metrics_not_a_dict),
    ErrorCase("evaluation", "`metric_for_best_model` naming a metric that is not computed", ValueError,
              "metric_for_best_model='accuracy': the evaluation produced no 'eval_accuracy'; it produced "
              "['eval_loss', 'eval_runtime', 'eval_samples_per_second', 'eval_steps_per_second']",
              _missing_best_metric),
    ErrorCase("evaluation", "`eval_strategy=\"steps\"` without an `eval_dataset`", ValueError,
              "evaluates during training, but the Trainer has no eval_dataset", _no_eval_dataset),
    ErrorCase("evaluation", "an empty `eval_dataset` with `eval_strategy=\"steps\"` (or to `evaluate()`)", ValueError,
              "evaluate() got an empty eval_dataset (0 samples): there is nothing to evaluate; pass a dataset with "
              "samples or set eval_strategy='no'",
              lambda tmp: regression_trainer(tmp, eval_dataset=RegressionDataset(0), eval_strategy="steps")),
    ErrorCase("evaluation", "`predict()` on an empty dataset", ValueError,
              "predict() got an empty test_dataset (0 samples)",
              lambda tmp: regression_trainer(tmp).predict(RegressionDataset(0))),
    ErrorCase("evaluation", "`label_names` naming no key of the eval batches", LoggedWarning,
              "evaluate() found no labels: the batches lack ['target'] of label_names=['target'] (batch keys "
              "['input_x', 'labels']), so there is no eval_loss and compute_metrics is not called",
              lambda tmp: _evaluate(tmp, label_names=["target"])),
    ErrorCase("evaluation", "a model that returns only its loss, with `compute_metrics`", LoggedWarning,
              "evaluate() got no predictions from the model, only its loss, so compute_metrics is not called",
              lambda tmp: _evaluate(tmp, model=_LossOnlyModel())),
    ErrorCase("search", "`hyperparameter_search` on a Trainer without `model_init`", RuntimeError,
              "hyperparameter_search needs a Trainer built with model_init", _search_without_model_init),
    # callbacks and faults during training
    ErrorCase("callbacks", "`callbacks=[print]` (not a TrainerCallback)", TypeError, "TrainerCallback",
              _not_a_callback),
    ErrorCase("callbacks", "a callback raising inside an event", KeyError,
              "raised by callback FailsAtStep6.on_step_end at global step 6", _raising_callback),
    ErrorCase("faults", "out of memory, `auto_find_batch_size=False`", torch.OutOfMemoryError,
              "out of memory with a batch of 8 per device", lambda tmp: _train(tmp, model=_OomAbove4(), max_steps=1)),
    ErrorCase("faults", "a logged value JSON cannot write (`trainer.log({\"x\": object()})`) at a save", TypeError,
              "trainer_state.json cannot hold state['log_history'][0]['x']", _log_an_object),
    ErrorCase("faults", "a nan loss with `nonfinite_loss=\"stop\"`", FloatingPointError,
              "the training loss is nan at global step 3", lambda tmp: _train(tmp, model=_NanAfter(3), max_steps=6,
                                                                                nonfinite_loss="stop")),
]
