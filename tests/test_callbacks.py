"""The callback bus: exact event order, early stopping, stopping from a callback, membership."""

from __future__ import annotations

import math
import os

import pytest

from callbacks import CallbackHandler
from tests.fixtures import EventRecorder, RegressionDataset, RegressionModel, regression_args, regression_trainer
from trainer import (
    DefaultFlowCallback,
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainerState,
)


def expected_events(*, samples, batch, accum, epochs, logging, logging_steps, eval_s, eval_steps, save, save_steps,
                    eval_batches):
    """The event list the documented loop must produce, computed from the settings alone."""
    batches = math.ceil(samples / batch)
    steps_per_epoch = math.ceil(batches / accum)
    max_steps = steps_per_epoch * epochs
    evaluation = ["on_prediction_step"] * eval_batches + ["on_log", "on_evaluate"]
    events = ["on_init_end", "on_train_begin"]
    step = 0
    for _ in range(epochs):
        events.append("on_epoch_begin")
        for s in range(steps_per_epoch):
            micro = min(accum, batches - s * accum)
            events.append("on_step_begin")
            events += ["on_substep_end"] * (micro - 1)
            events += ["on_pre_optimizer_step", "on_optimizer_step", "on_step_end"]
            step += 1
            if logging == "steps" and step % logging_steps == 0:
                events.append("on_log")
            if eval_s == "steps" and (step % eval_steps == 0 or step == max_steps):  # the last step too
                events += evaluation
            if save == "steps" and (step % save_steps == 0 or step == max_steps):
                events.append("on_save")
        events.append("on_epoch_end")
        if logging == "epoch":
            events.append("on_log")
        if eval_s == "epoch":
            events += evaluation
        if save == "epoch":
            events.append("on_save")
    return events + ["on_log", "on_train_end"]


@pytest.mark.parametrize(
    "settings",
    [
        dict(logging="steps", logging_steps=3, eval_s="steps", eval_steps=5, save="steps", save_steps=4, accum=1),
        dict(logging="steps", logging_steps=2, eval_s="steps", eval_steps=2, save="steps", save_steps=3, accum=3),
        dict(logging="epoch", logging_steps=500, eval_s="epoch", eval_steps=None, save="epoch", save_steps=500, accum=2),
        dict(logging="no", logging_steps=500, eval_s="no", eval_steps=None, save="no", save_steps=500, accum=1),
    ],
    ids=["steps", "steps-accumulation", "epoch", "nothing"],
)
def test_event_order(tmp_path, settings):
    recorder = EventRecorder()
    samples, batch, epochs = 36, 4, 2  # 9 batches per epoch
    args = regression_args(
        tmp_path, per_device_train_batch_size=batch, per_device_eval_batch_size=8, num_train_epochs=epochs,
        gradient_accumulation_steps=settings["accum"], logging_strategy=settings["logging"],
        logging_steps=settings["logging_steps"], eval_strategy=settings["eval_s"], eval_steps=settings["eval_steps"],
        save_strategy=settings["save"], save_steps=settings["save_steps"],
    )
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(samples),
                      eval_dataset=RegressionDataset(12), callbacks=[recorder])
    trainer.train()
    expected = expected_events(samples=samples, batch=batch, epochs=epochs, eval_batches=2, **settings)
    assert recorder.events == expected


def test_evaluate_and_predict_events(tmp_path):
    recorder = EventRecorder()
    trainer = Trainer(RegressionModel(), regression_args(tmp_path), callbacks=[recorder])
    trainer.evaluate(RegressionDataset(20))
    trainer.predict(RegressionDataset(8))
    assert recorder.events == ["on_init_end"] + ["on_prediction_step"] * 3 + ["on_log", "on_evaluate"] + [
        "on_prediction_step", "on_predict"]


def test_eval_delay_skips_early_evaluations(tmp_path):
    trainer = regression_trainer(tmp_path, eval_strategy="steps", eval_steps=2, eval_delay=10, eval_dataset=RegressionDataset(8))
    trainer.train()  # 16 steps
    assert [e["step"] for e in trainer.state.log_history if "eval_loss" in e] == [10, 12, 14, 16]


class ScriptedMetric:
    """compute_metrics returning a fixed sequence of 'score' values, one per evaluation."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, pred):
        return {"score": self.values.pop(0)}


def test_early_stopping_stops_at_the_right_step(tmp_path):
    args = regression_args(tmp_path, eval_strategy="steps", eval_steps=1, metric_for_best_model="score",
                           greater_is_better=False, max_steps=20)
    stopper = EarlyStoppingCallback(early_stopping_patience=2)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), eval_dataset=RegressionDataset(8),
                      compute_metrics=ScriptedMetric([5, 4, 4.5, 3.9, 4.0, 4.2, 1, 1]), callbacks=[stopper])
    trainer.train()
    # best 4 at step 2; 4.5 worse (1); 3.9 better (0); 4.0 worse (1); 4.2 worse (2) -> stop after step 6
    assert trainer.state.global_step == 6
    assert stopper.early_stopping_patience_counter == 2
    assert stopper.best_metric == 3.9
    assert trainer.state.log_history[-1]["train_loss"] > 0  # training ended cleanly with final metrics


def test_early_stopping_threshold(tmp_path):
    args = regression_args(tmp_path, eval_strategy="steps", eval_steps=1, metric_for_best_model="score", max_steps=20)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), eval_dataset=RegressionDataset(8),
                      compute_metrics=ScriptedMetric([1.0, 1.05, 1.08, 1.5] + [0] * 20),
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=2, early_stopping_threshold=0.1)])
    trainer.train()  # greater is better; +0.05 and +0.08 are below the threshold
    assert trainer.state.global_step == 3


def test_early_stopping_needs_metric_and_evaluation(tmp_path):
    trainer = regression_trainer(tmp_path,
                                 callbacks=[EarlyStoppingCallback()])
    with pytest.raises(ValueError, match="EarlyStoppingCallback needs metric_for_best_model"):
        trainer.train()
    with pytest.raises(ValueError, match="early_stopping_patience=0 must be >= 1"):
        EarlyStoppingCallback(0)


def test_early_stopping_state_round_trip():
    cb = EarlyStoppingCallback(3, 0.5)
    cb.early_stopping_patience_counter, cb.best_metric = 2, 0.25
    copy = EarlyStoppingCallback.from_state(cb.state())
    assert (copy.early_stopping_patience, copy.early_stopping_threshold) == (3, 0.5)
    assert (copy.early_stopping_patience_counter, copy.best_metric) == (2, 0.25)


def test_callback_can_stop_training(tmp_path):
    class StopAtThree(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    recorder = EventRecorder()
    trainer = regression_trainer(tmp_path,
                                 callbacks=[StopAtThree, recorder])
    trainer.train()
    assert trainer.state.global_step == 3
    assert recorder.events[-4:] == ["on_step_end", "on_epoch_end", "on_log", "on_train_end"]


def test_callbacks_receive_objects(tmp_path):
    seen = {}

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                           train_dataloader=None, **kwargs):
            seen.update(model=model, optimizer=optimizer, lr_scheduler=lr_scheduler, loader=train_dataloader)

        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.setdefault("logs", []).append(logs)

    model = RegressionModel()
    trainer = Trainer(model, regression_args(tmp_path, max_steps=4), train_dataset=RegressionDataset(),
                      callbacks=[Spy()])
    trainer.train()
    assert seen["model"] is model and seen["optimizer"] is trainer.optimizer
    assert seen["lr_scheduler"] is trainer.lr_scheduler and seen["loader"] is not None
    assert "loss" in seen["logs"][0]


def test_add_pop_remove_callbacks_by_class_and_instance(tmp_path):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path))
    names = lambda: [type(c).__name__ for c in trainer.callback_handler.callbacks]  # noqa: E731
    assert names() == ["DefaultFlowCallback", "PrinterCallback"]
    trainer.add_callback(EventRecorder)
    instance = EventRecorder()
    trainer.add_callback(instance)
    assert names() == ["DefaultFlowCallback", "PrinterCallback", "EventRecorder", "EventRecorder"]
    popped = trainer.pop_callback(EventRecorder)
    assert isinstance(popped, EventRecorder) and popped is not instance
    assert trainer.pop_callback(instance) is instance
    trainer.remove_callback(PrinterCallback)
    assert names() == ["DefaultFlowCallback"]
    assert trainer.pop_callback(ProgressCallback) is None
    with pytest.raises(TypeError, match="subclass trainer.TrainerCallback"):
        trainer.add_callback(object())


def test_progress_bars_by_default(tmp_path, capsys):
    trainer = regression_trainer(tmp_path, disable_tqdm=False, max_steps=8, logging_steps=4)
    assert any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks)
    trainer.train()
    err = capsys.readouterr().err
    assert "train: 100%" in err and "8/8" in err


def test_dispatch_skips_callbacks_without_the_event():
    class OnlyLog(TrainerCallback):
        def on_log(self, args, state, control, **kwargs):
            pass

    handler = CallbackHandler([DefaultFlowCallback(), OnlyLog()])
    assert handler.listeners("on_step_begin") == []
    assert [m.__self__.__class__.__name__ for m in handler.listeners("on_step_end")] == ["DefaultFlowCallback"]
    assert [m.__self__.__class__.__name__ for m in handler.listeners("on_log")] == ["OnlyLog"]


def test_trainer_state_json_round_trip(tmp_path):
    state = TrainerState(global_step=7, best_metric=0.5, log_history=[{"loss": 1.0, "step": 7}])
    path = tmp_path / "state.json"
    state.save_to_json(str(path))
    assert TrainerState.load_from_json(str(path)) == state


def test_callback_returning_a_new_control_object_is_followed(tmp_path):
    from trainer import TrainerControl

    class Replace(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            fresh = TrainerControl()
            fresh.should_save = state.global_step == 2
            fresh.should_training_stop = state.global_step == 3
            return fresh

    trainer = regression_trainer(tmp_path, save_strategy="no", callbacks=[Replace()])
    trainer.train()
    assert trainer.state.global_step == 3
    assert os.path.isdir(tmp_path / "out" / "checkpoint-2")


def test_profiler_callback_writes_a_trace_of_the_scheduled_steps(tmp_path):
    import glob
    import json

    from trainer import ProfilerCallback

    trainer = regression_trainer(tmp_path, max_steps=8, profile=True)
    assert any(isinstance(cb, ProfilerCallback) for cb in trainer.callback_handler.callbacks)
    trainer.train()
    (trace,) = glob.glob(os.path.join(trainer.args.logging_dir, "profile", "*.pt.trace.json"))
    with open(trace) as f:
        events = json.load(f)["traceEvents"]
    steps = sorted({e["name"] for e in events if e.get("name", "").startswith("ProfilerStep#")})
    assert steps == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]  # wait 1, warmup 1, active 3
    assert any("aten::" in e.get("name", "") for e in events)  # the model's ops are in it
    with pytest.raises(ValueError, match="ProfilerCallback active=0 must be an integer >= 1"):
        ProfilerCallback(active=0)


@pytest.mark.parametrize("display", ["terminal", "notebook"])
def test_progress_of_an_evaluation_of_unknown_length_counts_without_a_total(tmp_path, display, capsys):
    """evaluate()/predict() on an IterableDataset without __len__: the bar counts batches with no total."""
    from callbacks import NotebookProgressCallback, ProgressCallback
    from tests.fixtures import SampleIterableDataset

    drawn = []

    class Handle:
        def update(self, markup):
            drawn.append(str(markup))

    class RecordedNotebook(NotebookProgressCallback):
        def _display(self, markup, handle=None):
            drawn.append(markup)
            return handle or Handle()

    trainer = regression_trainer(tmp_path, disable_tqdm=False, per_device_eval_batch_size=8)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(RecordedNotebook() if display == "notebook" else ProgressCallback())
    metrics = trainer.evaluate(SampleIterableDataset(20))  # 3 batches: 8, 8, 4
    assert "eval_loss" in metrics
    assert trainer.predict(SampleIterableDataset(20)).predictions.shape == (20,)
    if display == "notebook":
        assert any("/? " in m for m in drawn) and not any("/20 " in m or "/3 " in m for m in drawn)
    else:
        assert "3it" in capsys.readouterr().err
