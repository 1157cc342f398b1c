"""NotebookProgressCallback: progress and metrics drawn as HTML in Jupyter, updated in place.

Chosen instead of ``ProgressCallback`` when the Trainer is built inside a Jupyter kernel
(``in_notebook()``). It shows, in one output that is redrawn (not appended to):

- a training bar: ``<progress>`` with ``step/max_steps``, elapsed and remaining time, the epoch;
- a table with one row per evaluation: ``Step``, ``Epoch``, ``Training Loss`` (the last logged),
  ``Validation Loss`` and every other ``eval_*`` metric (runtime and throughput left out);

and a second bar over evaluation batches while an evaluation runs. An ``evaluate()`` outside
training draws a one-row table of its own. Redraws of the training
bar are throttled to one per ``update_every`` seconds (and the last step). Main process only;
it adds no log keys.
"""

from __future__ import annotations

import html
import sys
import time

from .base import TrainerCallback
from .progress import known_length

_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (classic, Lab, VS Code, Colab), False in a terminal or IPython shell."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; never import it here
    if ipython is None or not hasattr(ipython, "get_ipython"):
        return False
    shell = ipython.get_ipython()
    if shell is None:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in sys.modules


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_html(value: int, total: int | None, label: str, start: float) -> str:
    """A ``<progress>`` bar with ``value/total``, elapsed and estimated remaining time."""
    elapsed = time.time() - start
    remaining = ""
    if total and value:
        remaining = f" &lt; {_duration(elapsed / value * (total - value))}"
    total_text = total if total is not None else "?"
    return (f"<div><progress value='{value}' max='{total or value or 1}' style='width:300px; height:20px'></progress>"
            f" [{value}/{total_text} {_duration(elapsed)}{remaining}{html.escape(label)}]</div>")


def table_html(rows: list[dict]) -> str:
    """An HTML table; columns in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table border='1' class='dataframe'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class NotebookProgressCallback(TrainerCallback):
    """Training bar, evaluation bar and metrics table as HTML, each redrawn in place."""

    def __init__(self, update_every: float = 0.2):
        self.update_every = update_every
        self.rows: list[dict] = []
        self._handle = None
        self._eval_handle = None
        self._eval_count = 0
        self._start = self._eval_start = 0.0
        self._last_draw = 0.0
        self._last_loss = None
        self._state = None

    # -- drawing ----------------------------------------------------------------------------
    def _display(self, markup: str, handle=None):
        from IPython.display import HTML, display

        if handle is None:
            return display(HTML(markup), display_id=True)
        handle.update(HTML(markup))
        return handle

    def _draw(self, state, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_draw < self.update_every and state.global_step < state.max_steps:
            return
        self._last_draw = now
        epoch = f", Epoch {state.epoch:.2f}/{state.num_train_epochs}" if state.epoch is not None else ""
        markup = progress_html(state.global_step, state.max_steps, epoch, self._start)
        if self.rows:
            markup += table_html(self.rows)
        self._handle = self._display(markup, self._handle)

    # -- events -----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.rows = []
        self._handle = None
        self._last_loss = None
        self._start = time.time()
        self._draw(state, force=True)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self._handle is not None:
            self._draw(state)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self._eval_handle is None:
            self._eval_count = 0
            self._eval_start = time.time()
        self._eval_count += 1
        total = known_length(eval_dataloader)
        if self._eval_handle is None or self._eval_count == total or time.time() - self._last_draw >= self.update_every:
            markup = progress_html(self._eval_count, total, " evaluation", self._eval_start)
            self._eval_handle = self._display(markup, self._eval_handle)
            self._last_draw = time.time()

    def _end_evaluation(self) -> None:
        if self._eval_handle is not None:
            self._eval_handle.update(self._html_empty())
            self._eval_handle = None

    @staticmethod
    def _html_empty():
        from IPython.display import HTML

        return HTML("")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            self._last_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self._end_evaluation()
        row = {"Step": state.global_step}
        if state.epoch is not None:
            row["Epoch"] = round(state.epoch, 2)
        row["Training Loss"] = self._last_loss if self._last_loss is not None else "No log"
        for key, value in (metrics or {}).items():
            if not key.startswith("eval_") or key.endswith(_SPEED_SUFFIXES) or key == "eval_epoch":
                continue
            name = key[len("eval_"):]
            row["Validation Loss" if name == "loss" else name.replace("_", " ").title()] = value
        if self._handle is not None:  # during training: a row of the training table
            self.rows.append(row)
            self._draw(state, force=True)
        else:
            self._display(table_html([row]))

    def on_predict(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._end_evaluation()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self._handle is not None:
            self._draw(state, force=True)
        self._handle = None  # a later evaluate() draws its own table, below, not into this one
        self.rows = []
