"""`trainforge checkpoints DIR` and `trainforge plot DIR`, and the curves embedded in the model card."""

from __future__ import annotations

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
        assert fields[:5] == [f"checkpoint-{step}", str(step), "yes", "yes", "yes"]
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
    assert len(lines) == 2 and lines[1].split()[:5] == ["checkpoint-4", "4", "yes", "yes", "yes"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["checkpoints", str(empty)]) == 2
    assert "holds no checkpoint (no checkpoint-N folder): give a run's output_dir" in capsys.readouterr().err
