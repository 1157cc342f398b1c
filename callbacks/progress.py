"""Progress display: tqdm bars (ProgressCallback) or plain printed logs (PrinterCallback).

Both print every ``logs`` dict received in ``on_log`` (the Trainer's keys: ``loss``,
``grad_norm``, ``learning_rate``, ``epoch``, ``eval_*``, ``train_runtime``...), on the main
process only. Neither adds keys of its own.
"""

from __future__ import annotations

from .base import TrainerCallback


def known_length(obj) -> int | None:
    """``len(obj)``, or None where there is none: a DataLoader over an ``IterableDataset`` without ``__len__``
    has the method but raises ``TypeError``. Progress displays then count without a total."""
    if obj is None:
        return None
    try:
        return len(obj)
    except TypeError:
        return None


def format_logs(logs: dict) -> str:
    """One line for a logs dict, floats shortened to 4 significant digits."""
    parts = []
    for key, value in logs.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"'{key}': {value}")
    return "{" + ", ".join(parts) + "}"


class ProgressCallback(TrainerCallback):
    """A tqdm bar over training steps (its postfix: the last logged loss and learning rate) and one
    over evaluation batches, nested below it; logs written above them."""

    def __init__(self, max_str_len: int = 100):
        self.training_bar = None
        self.prediction_bar = None
        self.max_str_len = max_str_len
        self._current_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc="train")
            self.training_bar.update(state.global_step)
        self._current_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        bar = self.training_bar
        if bar is not None:
            bar.update(state.global_step - self._current_step)
            self._current_step = state.global_step

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.prediction_bar is None:
            from tqdm.auto import tqdm

            self.prediction_bar = tqdm(
                total=known_length(eval_dataloader), leave=self.training_bar is None, dynamic_ncols=True, desc="eval"
            )
        self.prediction_bar.update(1)

    def _close_prediction_bar(self):
        if self.prediction_bar is not None:
            self.prediction_bar.close()
            self.prediction_bar = None

    def on_evaluate(self, args, state, control, **kwargs):
        self._close_prediction_bar()

    def on_predict(self, args, state, control, **kwargs):
        self._close_prediction_bar()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        from tqdm.auto import tqdm

        shown = {k: v for k, v in logs.items() if k != "total_flos"}
        text = format_logs(shown)
        (self.training_bar.write if self.training_bar is not None else tqdm.write)(text)
        if self.training_bar is not None and "loss" in logs:
            postfix = {"loss": f"{logs['loss']:.4g}"}
            if "learning_rate" in logs:
                postfix["lr"] = f"{logs['learning_rate']:.3g}"
            self.training_bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None


class PrinterCallback(TrainerCallback):
    """Prints every logs dict on the main process; used instead of bars when ``disable_tqdm``."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            print(format_logs({k: v for k, v in logs.items() if k != "total_flos"}), flush=True)
