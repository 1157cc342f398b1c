"""Flow parity: the same run on transformers' Trainer and on ours fires the same events at the same steps with
the same control flags, and logs the same keys at the same steps with the same values.

The recorder is a callback written for transformers (a ``transformers.TrainerCallback`` subclass): it runs on
our bus unchanged. Both runs use SGD and sequential sampling, so the values are comparable; they differ only by
float rounding (ours accumulates some sums in float64).
"""

from __future__ import annotations

import math

import pytest

transformers = pytest.importorskip("transformers")

import trainer as ours  # noqa: E402
from tests.fixtures import RegressionDataset, RegressionModel  # noqa: E402

FLAGS = ("should_training_stop", "should_epoch_stop", "should_save", "should_evaluate", "should_log")
EVENTS = sorted(name for name in vars(transformers.TrainerCallback) if name.startswith("on_"))
TIMINGS = ("_runtime", "_per_second")


def recorder() -> tuple[transformers.TrainerCallback, list]:
    """A transformers callback that records (event, step, epoch, control flags set) at every event."""
    seen: list = []

    def record(event):
        def method(self, args, state, control, **kwargs):
            flags = tuple(flag for flag in FLAGS if getattr(control, flag))
            seen.append((event, state.global_step, round(state.epoch or 0, 4), flags))
        return method

    cls = type("Recorder", (transformers.TrainerCallback,), {event: record(event) for event in EVENTS})
    return cls(), seen


def run(lib, output_dir, callbacks=(), **values):
    record, seen = recorder()
    arguments = dict(output_dir=str(output_dir), learning_rate=0.1, per_device_train_batch_size=8,
                     per_device_eval_batch_size=8, report_to="none", disable_tqdm=True, optim="sgd",
                     train_sampling_strategy="sequential", **values)
    if lib is transformers:
        arguments["use_cpu"] = True
    trainer = lib.Trainer(RegressionModel(), lib.TrainingArguments(**arguments), train_dataset=RegressionDataset(44),
                          eval_dataset=RegressionDataset(16, seed=1), callbacks=[*callbacks, record])
    trainer.train()
    return seen, trainer.state.log_history


def assert_same_flow(tmp_path, callbacks=lambda lib: (), **values):
    their_events, their_logs = run(transformers, tmp_path / "theirs", callbacks(transformers), **values)
    our_events, our_logs = run(ours, tmp_path / "ours", callbacks(ours), **values)
    assert our_events == their_events
    assert len(our_logs) == len(their_logs)
    for mine, theirs in zip(our_logs, their_logs):
        assert sorted(mine) == sorted(theirs)
        for key, value in theirs.items():
            if not key.endswith(TIMINGS):
                assert math.isclose(mine[key], value, rel_tol=1e-6), (key, mine, theirs)
    return our_events


SCHEDULES = {
    "steps": dict(max_steps=12, logging_steps=3, eval_strategy="steps", eval_steps=4, save_strategy="steps",
                  save_steps=5, logging_first_step=True),
    "epochs": dict(num_train_epochs=3, logging_strategy="epoch", eval_strategy="epoch", save_strategy="epoch"),
    "epoch eval_delay": dict(num_train_epochs=3, eval_strategy="epoch", save_strategy="epoch", eval_delay=2,
                             logging_steps=2),
    "accumulation and step eval_delay": dict(num_train_epochs=2, gradient_accumulation_steps=3, logging_steps=1,
                                             eval_strategy="steps", eval_steps=2, eval_delay=3, save_strategy="no"),
    "partial accumulation at epoch end": dict(num_train_epochs=2, gradient_accumulation_steps=4, logging_steps=1,
                                              eval_strategy="epoch", save_strategy="steps", save_steps=2,
                                              save_total_limit=1),
    "ratios, final evaluation": dict(max_steps=10, logging_steps=0.25, eval_strategy="steps", eval_steps=0.3,
                                     save_strategy="steps", save_steps=0.5),
    "best model": dict(max_steps=9, eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=3,
                       load_best_model_at_end=True, logging_steps=4),
    "save best": dict(num_train_epochs=3, eval_strategy="steps", eval_steps=2, save_strategy="best",
                      metric_for_best_model="loss", logging_steps=5),
    "max_steps inside an epoch, eval_on_start": dict(max_steps=7, eval_strategy="epoch", save_strategy="epoch",
                                                     logging_strategy="epoch", eval_on_start=True),
}


@pytest.mark.parametrize("values", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_the_same_events_flags_and_logs_as_transformers(tmp_path, values):
    assert_same_flow(tmp_path, **values)


def test_the_final_step_is_evaluated_once_with_a_step_strategy(tmp_path):
    events = assert_same_flow(tmp_path, **SCHEDULES["ratios, final evaluation"])
    # eval_steps=0.3 of 10 steps is every 3; step 10, the last, is evaluated too (step 9 is not evaluated twice)
    assert [step for event, step, _, _ in events if event == "on_evaluate"] == [3, 6, 9, 10]


@pytest.mark.parametrize("library", ["ours", "transformers"])
def test_early_stopping_stops_both_at_the_same_step(tmp_path, library):
    """transformers' EarlyStoppingCallback or ours, on both Trainers: the same stop."""
    def callbacks(lib):
        source = ours if library == "ours" else transformers
        return (source.EarlyStoppingCallback(early_stopping_patience=2, early_stopping_threshold=0.5),)

    events = assert_same_flow(tmp_path, callbacks, num_train_epochs=6, eval_strategy="steps", eval_steps=2,
                              save_strategy="steps", save_steps=2, load_best_model_at_end=True, logging_steps=2)
    stop = [step for event, step, _, flags in events if event == "on_evaluate" and "should_training_stop" in flags]
    assert stop and stop[0] < 36  # stopped early (6 epochs are 36 steps), at the step transformers stopped
