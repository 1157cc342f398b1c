"""Evaluation at scale: the three compute_metrics forms, host buffers, include_for_metrics,
several eval datasets, eval_on_start and the errors of bad evaluation input."""

from __future__ import annotations

import collections.abc
import functools
import json
import os
import sys

import numpy as np
import pytest
import torch

from tests.fixtures import RegressionDataset, RegressionModel, regression_args
from tests.processes import run
from trainer import EvalPrediction, Trainer, TrainerCallback
from trainer.prediction_store import HostArray, PredictionStore

pytest.importorskip("sklearn")
evaluate = pytest.importorskip("evaluate")

from tests.metric_forms import FORMS, DigitsClassifier, DigitsDataset, comparable, trainer_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def digits_args(tmp_path, **overrides):
    return regression_args(tmp_path, per_device_eval_batch_size=64, **overrides)


@pytest.fixture(scope="module")
def reference_metrics(tmp_path_factory):
    """Accuracy/F1 by scikit-learn over logits computed by hand, and the mean cross-entropy."""
    from sklearn.metrics import accuracy_score, f1_score

    data = DigitsDataset()
    with torch.no_grad():
        logits = DigitsClassifier().linear(data.x)
    preds = logits.argmax(-1).numpy()
    loss = torch.nn.functional.cross_entropy(logits.double(), data.y).item()
    return {"loss": loss, "accuracy": float(accuracy_score(data.y, preds)),
            "f1": float(f1_score(data.y, preds, average="macro"))}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("accumulation", [None, 3])
def test_compute_metrics_forms_give_the_same_numbers(tmp_path, form, accumulation, reference_metrics):
    trainer = trainer_for(form, functools.partial(digits_args, tmp_path), eval_accumulation_steps=accumulation)
    got = comparable(trainer.evaluate(DigitsDataset()))  # 1797 samples: 28 batches of 64, then one of 5
    assert got["accuracy"] == reference_metrics["accuracy"]  # the same predictions, counted the same way
    assert got["f1"] == pytest.approx(reference_metrics["f1"], rel=1e-12)
    assert got["loss"] == pytest.approx(reference_metrics["loss"], rel=1e-6)
    assert 0.0 < got["accuracy"] < 0.5  # an untrained model: the test would see a wrong argmax


def test_batch_form_gets_each_batch_once_and_the_result_flag_at_the_last(tmp_path):
    trainer = trainer_for("batch", functools.partial(digits_args, tmp_path))
    trainer.evaluate(DigitsDataset(200))  # batches of 64, 64, 64, 8
    calls = trainer.compute_metrics.calls
    assert calls == [(64, False), (64, False), (64, False), (8, True)]


def test_streaming_forms_keep_no_predictions_in_evaluate_but_predict_returns_them(tmp_path):
    for form in ("evaluate", "batch"):
        trainer = trainer_for(form, functools.partial(digits_args, tmp_path))
        output = trainer.evaluation_loop(trainer.get_eval_dataloader(DigitsDataset(100)), "Evaluation")
        assert output.predictions is None and output.label_ids is None
        assert "eval_accuracy" in output.metrics
        predicted = trainer.predict(DigitsDataset(100))
        assert predicted.predictions.shape == ((100,) if form == "evaluate" else (100, 10))
        assert predicted.metrics["test_accuracy"] == output.metrics["eval_accuracy"]


def test_metrics_are_the_same_across_two_processes(tmp_path, reference_metrics):
    """torchrun x2: 1797 samples in batches of 64 per rank; the padding of the last batches is left out."""
    script = tmp_path / "forms.py"
    script.write_text(
        "import functools, json, os, sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from tests.fixtures import regression_args\n"
        "from tests.metric_forms import FORMS, DigitsDataset, comparable, trainer_for\n"
        "from pathlib import Path\n"
        "out = {}\n"
        "for form in sorted(FORMS):\n"
        "    args = functools.partial(regression_args, Path(os.environ['TF_OUT']), per_device_eval_batch_size=64)\n"
        "    trainer = trainer_for(form, args, eval_accumulation_steps=2)\n"
        "    out[form] = comparable(trainer.evaluate(DigitsDataset()))\n"
        "    out[form + '_n'] = len(trainer.predict(DigitsDataset()).predictions)\n"
        "if trainer.is_world_process_zero():\n"
        "    json.dump(out, open(os.environ['TF_RESULT'], 'w'))\n"
    )
    result = tmp_path / "result.json"
    env = {**os.environ, "TF_OUT": str(tmp_path / "out"), "TF_RESULT": str(result), "OMP_NUM_THREADS": "1"}
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
               timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(result.read_text())
    for form in FORMS:
        assert got[form]["accuracy"] == reference_metrics["accuracy"], form
        assert got[form]["f1"] == pytest.approx(reference_metrics["f1"], rel=1e-12), form
        assert got[form]["loss"] == pytest.approx(reference_metrics["loss"], rel=1e-6), form
        assert got[form + "_n"] == 1797


# -- host buffers ---------------------------------------------------------------------------
def test_host_array_preallocates_grows_and_pads_ragged_rows():
    column = HostArray(padding_index=-100, capacity=5)
    column.append(np.ones((2, 3), dtype=np.int64))
    buffer = column.buffer
    column.append(np.full((2, 3), 2, dtype=np.int64))
    assert column.buffer is buffer and buffer.shape == (5, 3)  # written in place, no reallocation
    column.append(np.full((3, 4), 3, dtype=np.int64))  # wider and past the capacity
    out = column.result()
    assert out.shape == (7, 4)
    assert (out[:4, :3] != -100).all() and (out[:4, 3] == -100).all() and (out[4:] == 3).all()
    assert column.result(limit=6).shape == (6, 4)
    with pytest.raises(ValueError, match="only dimension 1 .* may vary.*eval_do_concat_batches=False"):
        column.append(np.zeros((1, 4, 2)))


def test_prediction_store_moves_every_n_batches_and_keeps_structure():
    store = PredictionStore(move_every=2, device=torch.device("cpu"), capacity=None)
    for i in range(3):
        store.add((torch.full((2,), i), {"tokens": torch.full((2, i + 1), i)}))
    first, nested = store.result(num_samples=5)
    assert first.tolist() == [0, 0, 1, 1, 2]
    assert nested["tokens"].shape == (5, 3) and nested["tokens"][0].tolist() == [0, -100, -100]
    listed = PredictionStore(move_every=None, device=torch.device("cpu"), concat=False)
    for i in range(3):
        listed.add(torch.full((2, i + 1), i))
    batches = listed.result(num_samples=5)
    assert [b.shape for b in batches] == [(2, 1), (2, 2), (1, 3)]


def test_eval_do_concat_batches_false_returns_one_array_per_batch(tmp_path):
    trainer = Trainer(RegressionModel(a=2.0, b=1.0), regression_args(tmp_path, eval_do_concat_batches=False))
    out = trainer.predict(RegressionDataset(20))
    assert [len(b) for b in out.predictions] == [8, 8, 4] and [len(b) for b in out.label_ids] == [8, 8, 4]
    np.testing.assert_allclose(np.concatenate(out.predictions), 2 * RegressionDataset(20).x + 1, rtol=1e-6)


def test_include_for_metrics_inputs_and_losses(tmp_path):
    seen = {}

    def compute_metrics(pred: EvalPrediction) -> dict:
        seen["pred"] = pred
        preds, labels, inputs, losses = pred  # unpacks with the extras
        return {"mean_loss": float(losses.mean())}

    args = regression_args(tmp_path, include_for_metrics=["inputs", "loss"], per_device_eval_batch_size=8)
    trainer = Trainer(RegressionModel(a=2.0, b=1.0), args, compute_metrics=compute_metrics)
    data = RegressionDataset(20)
    metrics = trainer.evaluate(data)
    pred = seen["pred"]
    np.testing.assert_allclose(pred.inputs, data.x)
    expected = [float(np.mean((2 * data.x[s:s + 8] + 1 - data.labels[0][s:s + 8]) ** 2)) for s in (0, 8, 16)]
    np.testing.assert_allclose(pred.losses, np.repeat(expected, [8, 8, 4]), rtol=1e-5)
    assert metrics["eval_mean_loss"] == pytest.approx(float(np.mean(pred.losses)))
    assert args.include_for_metrics == ["inputs", "loss"]
    assert regression_args(tmp_path, include_inputs_for_metrics=True).include_for_metrics == ["inputs"]


# -- several datasets, prefixes, eval_on_start ------------------------------------------------
def test_dict_of_eval_datasets_prefixes_each_and_reports_speed(tmp_path):
    trainer = trainer_for("function", functools.partial(digits_args, tmp_path))
    trainer.eval_dataset = {"small": DigitsDataset(100), "all": DigitsDataset()}
    metrics = trainer.evaluate()
    for name in ("small", "all"):
        for key in ("loss", "accuracy", "f1", "runtime", "samples_per_second", "steps_per_second"):
            assert f"eval_{name}_{key}" in metrics
    alone = trainer.evaluate(DigitsDataset(100), metric_key_prefix="check")
    assert alone["check_accuracy"] == metrics["eval_small_accuracy"] and "check_runtime" in alone
    evals = [h for h in trainer.state.log_history if "eval_small_loss" in h or "eval_all_loss" in h]
    assert len(evals) == 2  # each dataset logged once


def test_eval_on_start_evaluates_before_the_first_step_and_not_on_resume(tmp_path):
    args = regression_args(tmp_path, eval_on_start=True, eval_strategy="epoch", save_strategy="epoch",
                           num_train_epochs=2)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(32), eval_dataset=RegressionDataset(16))
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert [h["step"] for h in evals] == [0, 4, 8]
    assert trainer.state.log_history[0]["step"] == 0 and "eval_loss" in trainer.state.log_history[0]
    assert evals[0]["eval_loss"] > evals[-1]["eval_loss"]
    resumed = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(32), eval_dataset=RegressionDataset(16))
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert [h["step"] for h in resumed.state.log_history if "eval_loss" in h] == [0, 4, 8]  # none added at 4


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("returned, shown", [([0.5], "got list"), (None, "got NoneType .did it forget to return")])
def test_compute_metrics_must_return_a_dict(tmp_path, returned, shown):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path), compute_metrics=lambda p: returned)
    with pytest.raises(TypeError, match=f"compute_metrics must return a dict of metric name -> value, {shown}"):
        trainer.evaluate(RegressionDataset(8))


def test_metric_for_best_model_not_produced_lists_the_available_keys(tmp_path):
    args = regression_args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                           metric_for_best_model="accuracy", load_best_model_at_end=True)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(32), eval_dataset=RegressionDataset(8),
                      compute_metrics=lambda p: {"mse": 1.0})
    with pytest.raises(ValueError) as err:
        trainer.train()
    message = str(err.value)
    assert "metric_for_best_model='accuracy': the evaluation produced no 'eval_accuracy'" in message
    assert "'eval_loss'" in message and "'eval_mse'" in message and "'eval_runtime'" in message


def test_eval_strategy_without_eval_dataset_is_refused_at_construction(tmp_path):
    with pytest.raises(ValueError, match="eval_strategy='steps' evaluates during training, but the Trainer has no "
                                         "eval_dataset: pass Trainer.eval_dataset=.... or set eval_strategy='no'"):
        Trainer(RegressionModel(), regression_args(tmp_path, eval_strategy="steps", eval_steps=2),
                train_dataset=RegressionDataset(8))


def test_an_empty_stream_to_evaluate_is_refused_after_its_first_pass(tmp_path):
    from tests.fixtures import SampleIterableDataset

    trainer = Trainer(RegressionModel(), regression_args(tmp_path))
    with pytest.raises(ValueError, match=r"evaluate\(\) got an empty eval_dataset \(0 samples\)"):
        trainer.evaluate(SampleIterableDataset(0))
    assert "eval_loss" in trainer.evaluate(SampleIterableDataset(16))


def test_an_evaluation_short_of_its_metrics_warns_once_per_trainer_and_a_full_one_not_at_all(tmp_path, caplog):
    compute = {"compute_metrics": lambda p: {"mean": float(p.predictions.mean())}}
    mislabelled = Trainer(RegressionModel(), regression_args(tmp_path, label_names=["target"]), **compute)
    with caplog.at_level("WARNING", logger="trainer"):
        first = mislabelled.evaluate(RegressionDataset(16))
        mislabelled.evaluate(RegressionDataset(16))
    warned = [r.getMessage() for r in caplog.records if "evaluate() found no labels" in r.getMessage()]
    assert len(warned) == 1 and "label_names=['target']" in warned[0]
    assert sorted(k for k in first if k not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
                                                "epoch")) == [], first
    caplog.clear()
    with caplog.at_level("WARNING", logger="trainer"):
        metrics = Trainer(RegressionModel(), regression_args(tmp_path), **compute).evaluate(RegressionDataset(16))
        loss_only = Trainer(RegressionModel(), regression_args(tmp_path, prediction_loss_only=True), **compute)
        loss_only.evaluate(RegressionDataset(16))
    assert "eval_loss" in metrics and "eval_mean" in metrics
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


def test_evaluate_returns_the_epoch_it_logged_as_transformers_does(tmp_path):
    class Seen(TrainerCallback):
        metrics = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            Seen.metrics = dict(metrics)

    trainer = Trainer(RegressionModel(), regression_args(tmp_path, max_steps=3), train_dataset=RegressionDataset(),
                      callbacks=[Seen()])
    trainer.train()
    metrics = trainer.evaluate(RegressionDataset(16))
    assert metrics["epoch"] == trainer.state.epoch == 0.375  # 3 steps of 8 of 64 samples
    assert Seen.metrics == metrics
    assert {**metrics, "step": 3} == trainer.state.log_history[-1]


def test_batch_eval_metrics_needs_a_compute_result_parameter(tmp_path):
    with pytest.raises(TypeError, match="batch_eval_metrics=True calls compute_metrics.eval_prediction, "
                                        "compute_result=.... at every batch, but this compute_metrics has no "
                                        "compute_result parameter"):
        Trainer(RegressionModel(), regression_args(tmp_path, batch_eval_metrics=True), compute_metrics=lambda p: {})


def test_include_for_metrics_names_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"include_for_metrics=\['input'\]: unknown \['input'\]; choose from "
                                         r"\['inputs', 'loss'\]"):
        regression_args(tmp_path, include_for_metrics=["input"])


def test_evaluate_module_fed_logits_says_to_preprocess_them(tmp_path):
    from tests.metric_forms import evaluate_module

    trainer = Trainer(DigitsClassifier(), digits_args(tmp_path), compute_metrics=evaluate_module())
    with pytest.raises(ValueError, match="the evaluate module 'accuracy.f1' rejected a batch of predictions of "
                                         "shape .64, 10. .float32.*preprocess_logits_for_metrics"):
        trainer.evaluate(DigitsDataset(100))


def test_local_metric_names_are_checked():
    from trainer.local_metrics import load_metric

    with pytest.raises(ValueError, match=r"no local metric named 'bleu'; local metrics: \['accuracy', 'f1'\]"):
        load_metric("bleu")


class _Cache:
    """Stands in for a transformers ``Cache`` object: not a tensor, cannot be gathered."""


class CachingModel(torch.nn.Module):
    """Returns what a generative transformers model returns: loss, logits and a cache object; with a
    ``config`` holding ``keys_to_ignore_at_inference`` when one is given."""

    def __init__(self, ignore=None, cache_key="past_key_values", as_tuple=False):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(2.0))
        self.cache_key, self.as_tuple = cache_key, as_tuple
        if ignore is not None:
            self.config = type("Config", (), {"keys_to_ignore_at_inference": ignore})()

    def forward(self, input_x, labels=None):
        y = input_x * self.a
        hidden = torch.stack([y, -y], dim=-1)
        if self.as_tuple:
            return (torch.nn.functional.mse_loss(y, labels), y, _Cache(), hidden)
        return {"loss": torch.nn.functional.mse_loss(y, labels), "logits": y, self.cache_key: _Cache(),
                "hidden": hidden}


@pytest.mark.parametrize("model_kwargs, kept", [
    ({}, 2),                                            # no config: the cache key is dropped by default
    ({"cache_key": "some_state"}, 2),                   # an unlisted key holding an object: dropped, not gathered
    ({"ignore": ["hidden"], "cache_key": "mems"}, 1),   # the config's list is honoured, objects still dropped
    ({"as_tuple": True}, 2),                            # tuple outputs: the object is dropped, order kept
])
def test_predict_drops_cache_objects_and_ignored_keys_from_the_predictions(tmp_path, model_kwargs, kept):
    """transformers 5.25 models return an ``EncoderDecoderCache``/``DynamicCache`` among their outputs
    and no longer list it in ``keys_to_ignore_at_inference``: predict() must not try to gather it."""
    trainer = Trainer(CachingModel(**model_kwargs), regression_args(tmp_path))
    data = RegressionDataset(20)
    out = trainer.predict(data)
    preds = out.predictions if isinstance(out.predictions, tuple) else (out.predictions,)
    assert len(preds) == kept
    np.testing.assert_array_equal(preds[0], 2.0 * data.x)
    if kept == 2:
        np.testing.assert_array_equal(preds[1], np.stack([2.0 * data.x, -2.0 * data.x], axis=-1))
    assert out.metrics["test_loss"] == pytest.approx(float(np.mean((2.0 * data.x - data.labels[0]) ** 2)), rel=1e-6)


def test_ignore_keys_passed_to_predict_win_over_the_defaults(tmp_path):
    trainer = Trainer(CachingModel(), regression_args(tmp_path))
    out = trainer.predict(RegressionDataset(20), ignore_keys=["logits"])
    assert out.predictions.shape == (20, 2)  # only "hidden" is left


class MappingBatch(collections.abc.Mapping):
    """A batch that is a Mapping but not a dict, as transformers' BatchEncoding is (it is a UserDict)."""

    def __init__(self, data: dict):
        self.data = data

    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)  # its number of fields: 2 here, whatever the batch size


def mapping_collator(samples):
    return MappingBatch({"input_x": torch.tensor([s["input_x"] for s in samples]),
                         "labels": torch.tensor([s["labels"] for s in samples])})


@pytest.mark.parametrize("dataset", ["sized", "iterable"])
def test_a_mapping_batch_is_sized_by_its_tensors_not_its_keys(tmp_path, dataset):
    """20 samples in batches of 8, 8 and 4: eval_loss is the mean over the 20 samples (the batches weighted by
    their sizes), and an unsized dataset counts 20 samples, not 3 x 2 keys."""
    from tests.fixtures import SampleIterableDataset

    data = RegressionDataset(20) if dataset == "sized" else SampleIterableDataset(20)
    base = RegressionDataset(20)
    model = RegressionModel(a=1.0, b=0.5)
    trainer = Trainer(model, regression_args(tmp_path, per_device_eval_batch_size=8), data_collator=mapping_collator)
    output = trainer.evaluation_loop(trainer.get_eval_dataloader(data), "Evaluation")
    x, y = torch.tensor(base.x, dtype=torch.float64), torch.tensor(base.labels[0], dtype=torch.float64)
    true_mean = ((x * 1.0 + 0.5 - y) ** 2).mean().item()
    assert output.metrics["eval_loss"] == pytest.approx(true_mean, rel=1e-6)
    assert output.num_samples == 20


def test_metrics_of_numpy_and_torch_types_are_plain_and_checkpoints_save(tmp_path):
    """compute_metrics returning numpy/torch scalars and arrays: the metrics are plain Python (as transformers
    makes them), so trainer_state.json writes and the run saves its checkpoints."""
    def metrics(p):
        return {"np_float": np.float32(1.5), "np_int": np.int64(3), "scalar": torch.tensor(2.0),
                "array": np.array([1.0, 2.0]), "nested": {"per_class": [np.float64(0.25), torch.tensor(0.5)]}}

    from tests.fixtures import regression_trainer

    trainer = regression_trainer(tmp_path, eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4,
                                 max_steps=8, eval_dataset=RegressionDataset(16), compute_metrics=metrics)
    trainer.train()
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["checkpoint-4", "checkpoint-8"]
    with open(out / "checkpoint-8" / "trainer_state.json") as f:
        logged = [e for e in json.load(f)["log_history"] if "eval_np_float" in e][-1]
    assert {k: logged[k] for k in ("eval_np_float", "eval_np_int", "eval_scalar", "eval_array", "eval_nested")} == {
        "eval_np_float": 1.5, "eval_np_int": 3, "eval_scalar": 2.0, "eval_array": [1.0, 2.0],
        "eval_nested": {"per_class": [0.25, 0.5]}}
    assert type(logged["eval_np_int"]) is int


def test_a_value_json_cannot_write_fails_the_save_by_name_and_leaves_no_temporary_folder(tmp_path):
    from tests.fixtures import regression_trainer

    class LogsAnObject(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                state.log_history.append({"odd": object(), "step": 3})

    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=2, max_steps=4,
                                 callbacks=[LogsAnObject()])
    with pytest.raises(TypeError, match=r"trainer_state.json cannot hold state\['log_history'\]\[\d+\]\['odd'\] = "
                                         r"<object object at .*> \(a builtins.object\): log and return plain numbers"):
        trainer.train()
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-2"]  # no .tmp-checkpoint-4 left behind
