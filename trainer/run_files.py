"""Reading a finished or running output_dir: its checkpoints, and its curves drawn from trainer_state.json.

Used by ``trainforge checkpoints DIR`` and ``trainforge plot DIR``; the model card embeds the plot.
"""

from __future__ import annotations

import json
import os

from . import checkpoint as ckpt
from .adapters import ADAPTER_WEIGHTS_NAME

CURVES_NAME = "training_curves.png"
_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def describe_checkpoints(output_dir: str) -> list[dict]:
    """One dict per checkpoint folder (complete or left by an interrupted save), oldest first.

    Keys: ``name``, ``step``, ``complete`` (trainer_state.json written last by the atomic save), ``weights``
    (what holds them: "model", "adapter", "engine", or "" for none), ``optimizer``, ``metric`` (the value of
    metric_for_best_model, or eval_loss, logged at that step), ``best`` (the run's best checkpoint).
    """
    if not os.path.isdir(output_dir):
        raise FileNotFoundError(f"{output_dir!r} is not a directory: give the run's output_dir")
    name = os.path.basename(os.path.normpath(output_dir))
    if _step_of(name) >= 0:  # a checkpoint folder itself: its row, read from the run it belongs to
        rows = [r for r in describe_checkpoints(os.path.dirname(os.path.abspath(output_dir))) if r["name"] == name]
        return rows
    rows = []
    complete = {os.path.basename(p) for p in ckpt.list_checkpoints(output_dir)}
    newest_state = _newest_state(output_dir, complete)
    metric_name = _metric_name(output_dir, complete)
    best = os.path.basename(newest_state.get("best_model_checkpoint") or "") if newest_state else ""
    by_step = {}
    for entry in (newest_state or {}).get("log_history", []):
        if metric_name in entry:
            by_step[entry.get("step")] = entry[metric_name]
    for name in sorted(os.listdir(output_dir), key=_step_of):
        path = os.path.join(output_dir, name)
        if not os.path.isdir(path) or _step_of(name) < 0:
            continue
        step = _step_of(name)
        files = set(os.listdir(path))
        rows.append({
            "name": name,
            "step": step,
            "complete": name in complete,
            "weights": _weights_kind(files),
            "optimizer": ckpt.OPTIMIZER_NAME in files or any(f.startswith("global_step") for f in files),
            "metric": by_step.get(step),
            "best": name == best,
        })
    if not rows:
        raise ValueError(f"{output_dir!r} holds no checkpoint (no checkpoint-N folder): give a run's output_dir "
                         "or one of its checkpoint-N folders")
    return rows


def _step_of(name: str) -> int:
    """N of ``checkpoint-N`` or of a save in progress (``tmp-checkpoint-N``); -1 for any other name."""
    step = ckpt.checkpoint_step(name.removeprefix(ckpt.TMP_PREFIX))
    return -1 if step is None else step


def _newest_state(output_dir: str, complete: set[str]) -> dict | None:
    candidates = [os.path.join(output_dir, ckpt.TRAINER_STATE_NAME)]
    candidates += [os.path.join(output_dir, n, ckpt.TRAINER_STATE_NAME) for n in sorted(complete, key=_step_of)]
    states = []
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            states.append((state.get("global_step", 0), state))
    return max(states, key=lambda s: s[0])[1] if states else None


def _metric_name(output_dir: str, complete: set[str]) -> str:
    for name in sorted(complete, key=_step_of, reverse=True):
        path = os.path.join(output_dir, name, ckpt.TRAINING_ARGS_NAME)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                metric = json.load(f).get("metric_for_best_model")
            if metric:
                return metric if metric.startswith("eval_") else f"eval_{metric}"
    return "eval_loss"


def _weights_kind(files: set[str]) -> str:
    """What holds a checkpoint's weights: "model" (the model's files), "adapter" (a PEFT model's adapters only),
    "engine" (DeepSpeed's own files), or "" (none: a save interrupted before them)."""
    if any(f.startswith(("model", "pytorch_model")) for f in files):
        return "model"
    if ADAPTER_WEIGHTS_NAME in files:
        return "adapter"
    return "engine" if any(f.startswith("global_step") for f in files) else ""


def format_checkpoints(rows: list[dict]) -> str:
    """The table ``trainforge checkpoints`` prints."""
    lines = [f"{'checkpoint':<24}{'step':>8}  {'complete':<9}{'weights':<9}{'optimizer':<10}{'metric':>12}  best"]
    for r in rows:
        metric = f"{r['metric']:.6g}" if isinstance(r["metric"], (int, float)) else "-"
        lines.append(f"{r['name']:<24}{r['step']:>8}  {'yes' if r['complete'] else 'NO':<9}"
                     f"{r['weights'] or 'no':<9}{'yes' if r['optimizer'] else 'no':<10}{metric:>12}  "
                     f"{'*' if r['best'] else ''}")
    return "\n".join(lines)


def curves(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """``{name: [(step, value)]}``: training loss, learning rate, grad norm and every eval metric."""
    out: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or step is None:
                continue
            if key in ("loss", "learning_rate", "grad_norm") or (key.startswith("eval_") and
                                                                  not key.endswith(_SPEED_SUFFIXES)):
                out.setdefault(key, []).append((step, float(value)))
    return out


def plot_run(run_dir: str, out_path: str | None = None, smooth: float = 0.0) -> str:
    """Draw the run's curves (from its newest trainer_state.json) into a PNG; returns its path."""
    state = _newest_state(run_dir, {os.path.basename(p) for p in ckpt.list_checkpoints(run_dir)}) \
        if os.path.isdir(run_dir) else None
    if state is None:
        raise FileNotFoundError(f"no {ckpt.TRAINER_STATE_NAME} in {run_dir!r} or its checkpoints: give a run's "
                                "output_dir (or call trainer.save_state())")
    return plot_curves(state.get("log_history", []), out_path or os.path.join(run_dir, CURVES_NAME), run_dir, smooth)


SMOOTHED = ("loss", "grad_norm")  # the noisy per-step curves ``smooth`` applies to; eval points are few


def plot_curves(log_history: list[dict], out_path: str, source: str = "the run", smooth: float = 0.0) -> str:
    """Training loss, learning rate, grad norm and every eval metric of ``log_history``, one panel each, as a PNG."""
    fig = draw_curves(log_history, source, smooth)
    fig.savefig(out_path, dpi=100)
    from matplotlib import pyplot as plt

    plt.close(fig)
    return out_path


def draw_curves(log_history: list[dict], source: str = "the run", smooth: float = 0.0):
    """The figure of ``plot_curves``. Each curve is a line, a lone point a level line with its value written;
    at most 5 step ticks, written short (``20k``); with ``smooth`` (0 to 1, as TensorBoard's slider) the
    loss and grad norm are drawn faint with their exponential moving average over them."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth={smooth} must be in [0, 1): the weight of the past in the moving average "
                         "(0: none, 0.9: strong)")
    series = curves(log_history)
    if not series:
        raise ValueError(f"{source!r}: the run logged no loss, learning rate, grad norm or eval metric to plot")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, points) in zip(axes.flat, series.items()):
        steps, values = zip(*points)
        if len(points) == 1:
            ax.axhline(values[0], color="C0", linewidth=1.5)
            ax.plot(steps, values, "o", color="C0", markersize=5)
            ax.annotate(f"{values[0]:.4g} at step {steps[0]}", (0.5, 0.6), xycoords="axes fraction", ha="center")
        elif smooth and name in SMOOTHED:
            ax.plot(steps, values, color="C0", linewidth=1, alpha=0.3)
            ax.plot(steps, moving_average(values, smooth), color="C0", linewidth=1.8)
        else:
            ax.plot(steps, values, color="C0", linewidth=1.5, marker="o" if len(points) <= 30 else None, markersize=3)
        ax.set_title(name + (f" (smoothed {smooth:g})" if smooth and name in SMOOTHED and len(points) > 1 else ""))
        ax.set_xlabel("step")
        if len(points) == 1:  # one step: its tick alone, not fractions of a step around it
            ax.set_xlim(steps[0] - 1, steps[0] + 1)
            ax.set_xticks([steps[0]])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=2))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # a learning rate as 1e-4 x, not 0.000100
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def moving_average(values, weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled
    toward 0."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** i))
    return out
