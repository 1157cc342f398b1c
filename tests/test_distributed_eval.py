"""Evaluation across processes (torchrun, gloo on CPU): outputs come back in dataset order, loss exact."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.processes import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import json, os, sys
sys.path.insert(0, os.environ["TF_ROOT"])
import numpy as np
from tests.fixtures import RegressionDataset, RegressionModel
from trainer import Trainer, TrainingArguments

args = TrainingArguments(output_dir=os.environ["TF_OUT"], per_device_eval_batch_size=4, disable_tqdm=True)
trainer = Trainer(RegressionModel(a=1.5, b=-0.5), args)
data = RegressionDataset(23, seed=3)
out = trainer.predict(data)
if trainer.is_world_process_zero():
    json.dump({"world": trainer.runtime.num_processes, "preds": out.predictions.tolist(),
               "labels": out.label_ids.tolist(), "loss": out.metrics["test_loss"]}, open(os.environ["TF_RESULT"], "w"))
'''


@pytest.mark.parametrize("nproc", [3])
def test_distributed_predict_is_in_dataset_order(tmp_path, nproc):
    import numpy as np

    from tests.fixtures import RegressionDataset

    script = tmp_path / "eval_script.py"
    script.write_text(SCRIPT)
    result = tmp_path / "result.json"
    env = {**os.environ, "TF_ROOT": ROOT, "TF_OUT": str(tmp_path / "out"), "TF_RESULT": str(result),
           "OMP_NUM_THREADS": "1"}
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                str(script)], timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(result.read_text())
    data = RegressionDataset(23, seed=3)
    expected = 1.5 * data.x - 0.5
    assert got["world"] == nproc
    np.testing.assert_allclose(got["preds"], expected, rtol=1e-6)  # 23 samples over 3 ranks x batches of 4
    np.testing.assert_array_equal(np.asarray(got["labels"], dtype=np.float32), data.labels[0])
    assert got["loss"] == pytest.approx(float(np.mean((expected - data.labels[0]) ** 2)), rel=1e-5)
