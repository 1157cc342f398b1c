"""`trainforge checkpoints DIR` and `trainforge plot DIR`, and the curves embedded in the model card."""

from __future__ import annotations

import json
import os
import struct

import pytest

from tests.fixtures import RegressionDataset, RegressionModel, regression_args
from trainer import Trainer
from trainer.cli import main
from trainer.run_files import curves


@pytest.fixture
def run_dir(tmp_path):
    args = regression_args(tmp_path, max_steps=6, logging_steps=2, eval_strategy="steps", eval_steps=2,
                           save_strategy="steps", save_steps=2, metric_for_best_model="loss")
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(64), eval_dataset=RegressionDataset(16))
    trainer.train()
    os.makedirs(tmp_path / "out" / ".tmp-checkpoint-8")  # a save interrupted by a kill
    return trainer


def test_checkpoints_lists_step_metric_completeness_and_best(run_dir, capsys):
    assert main(["checkpoints", run_dir.args.output_dir]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["checkpoint", "step", "complete", "weights", "optimizer", "metric", "best"]
    evals = {h["step"]: h["eval_loss"] for h in run_dir.state.log_history if "eval_loss" in h}
    best = os.path.basename(run_dir.state.best_model_checkpoint)
    for line, step in zip(lines[1:4], (2, 4, 6)):
        fields = line.split()
        assert fields[:5] == [f"checkpoint-{step}", str(step), "yes", "model", "yes"]
        assert fields[5] == f"{evals[step]:.6g}"
        assert (fields[-1] == "*") == (fields[0] == best)
    assert lines[4].split()[:3] == [".tmp-checkpoint-8", "8", "NO"]


def test_plot_draws_one_panel_per_curve(run_dir, capsys, tmp_path):
    out = tmp_path / "curves.png"
    assert main(["plot", run_dir.args.output_dir, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert set(curves(run_dir.state.log_history)) == {"loss", "learning_rate", "grad_norm", "eval_loss"}
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1260, 600)  # 4 panels: 3 columns x 2 rows at 4.2 x 3.0 inches, 100 dpi


def _curve_pixels(png) -> list[int]:
    """Per panel (3 columns, left to right, top to bottom), how many pixels have the curves' colour (C0)."""
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(str(png))[..., :3]
    blue = np.abs(image - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.08
    rows, cols = round(image.shape[0] / 300), round(image.shape[1] / 420)
    return [int(blue[r * 300:(r + 1) * 300, c * 420:(c + 1) * 420].sum()) for r in range(rows) for c in range(cols)]


def test_a_short_run_draws_a_line_in_every_panel_not_a_dot(tmp_path, capsys):
    args = regression_args(tmp_path, max_steps=2, logging_steps=2, eval_strategy="steps", eval_steps=2)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(64), eval_dataset=RegressionDataset(16))
    trainer.train()
    trainer.save_state()
    out = tmp_path / "short.png"
    assert all(len(points) == 1 for points in curves(trainer.state.log_history).values())
    assert main(["plot", str(tmp_path / "out"), "--out", str(out)]) == 0
    pixels = _curve_pixels(out)
    assert len(pixels) == 6 and pixels[4:] == [0, 0]  # loss, learning_rate, grad_norm, eval_loss; two blank
    assert min(pixels[:4]) > 400, pixels  # a level line across the panel (a lone 3-point dot is ~30 pixels)


def test_a_long_run_has_few_short_step_labels_that_do_not_overlap_and_smooths_on_request(tmp_path, capsys):
    import math
    import random

    from trainer.run_files import draw_curves, moving_average

    rng = random.Random(0)
    history = [{"step": s, "loss": 2 * math.exp(-s / 50_000) + rng.random(), "learning_rate": 1e-4 * (1 - s / 2e5)}
               for s in range(100, 200_001, 100)]
    fig = draw_curves(history, smooth=0.9)
    fig.canvas.draw()
    for ax in fig.axes[:2]:
        labels = [t for t in ax.get_xticklabels() if t.get_text() and 0 <= t.get_position()[0] <= 200_000]
        assert 2 <= len(labels) <= 6
        assert all(len(t.get_text()) <= 5 for t in labels), [t.get_text() for t in labels]  # 50k, 100k...
        boxes = sorted((t.get_window_extent().x0, t.get_window_extent().x1) for t in labels)
        assert all(a[1] < b[0] for a, b in zip(boxes, boxes[1:])), boxes  # no two labels overlap
    assert fig.axes[0].get_title() == "loss (smoothed 0.9)" and len(fig.axes[0].lines) == 2
    assert fig.axes[1].get_title() == "learning_rate" and len(fig.axes[1].lines) == 1
    assert moving_average([1.0, 3.0, 3.0], 0.5) == [1.0, 1.75 / 0.75, 2.375 / 0.875]  # debiased EMA
    out = tmp_path / "out.png"
    history_dir = tmp_path / "run"
    history_dir.mkdir()
    (history_dir / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert main(["plot", str(history_dir), "--out", str(out), "--smooth", "0.9"]) == 0
    assert min(_curve_pixels(out)[:2]) > 400
    assert main(["plot", str(history_dir), "--smooth", "1.5"]) == 2
    assert "smooth=1.5 must be in [0, 1)" in capsys.readouterr().err


def test_model_card_embeds_the_curves(run_dir):
    run_dir.create_model_card()
    out = run_dir.args.output_dir
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert "![Training curves: loss, learning rate, grad norm and evaluation metrics](training_curves.png)" in card
    assert open(os.path.join(out, "training_curves.png"), "rb").read(4) == b"\x89PNG"


def test_plot_and_checkpoints_explain_a_wrong_directory(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no trainer_state.json in" in capsys.readouterr().err
    assert main(["checkpoints", str(tmp_path / "missing")]) == 2
    assert "is not a directory: give the run's output_dir" in capsys.readouterr().err


def test_checkpoints_of_one_checkpoint_folder_and_of_a_directory_without_any(run_dir, tmp_path, capsys):
    assert main(["checkpoints", os.path.join(run_dir.args.output_dir, "checkpoint-4")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:5] == ["checkpoint-4", "4", "yes", "model", "yes"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["checkpoints", str(empty)]) == 2
    assert "holds no checkpoint (no checkpoint-N folder): give a run's output_dir" in capsys.readouterr().err
