"""GPU-only checks. CI has no GPU: these skip with a reason there; run them on a GPU machine."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from tests.fixtures import RegressionDataset, RegressionDropoutModel, regression_args
from tests.processes import run
from trainer import Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@needs_cuda
def test_fp16_on_cuda_scales_the_loss(tmp_path):
    trainer = Trainer(model_init=RegressionDropoutModel, args=regression_args(tmp_path, fp16=True, max_steps=6),
                      train_dataset=RegressionDataset())
    trainer.train()
    assert trainer.runtime.device.type == "cuda"
    assert type(trainer.runtime.scaler).__name__ == "GradScaler" and trainer.runtime.scaler.get_scale() > 1
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainer.model.parameters())


@needs_cuda
def test_resume_is_exact_on_cuda(tmp_path):
    from tests.test_resume import assert_resume_parity

    assert_resume_parity(tmp_path, 5)


@needs_two_gpus
def test_nccl_ddp_on_two_gpus(tmp_path):
    script = os.path.join(ROOT, "tests", "scripts", "ddp_checks.py")
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                "--out", str(tmp_path)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


@needs_cuda
def test_fairscale_fully_sharded_trains_and_resumes_on_gpus(tmp_path):
    """FairScale FSDP (sharded_ddp='zero_dp_3'): a cut run resumed gives the straight run's weights."""
    from tests.test_distributed_engines import assert_cut_run_resumes_exactly

    assert_cut_run_resumes_exactly(tmp_path, "--engine", "fairscale_fsdp", nproc=min(2, torch.cuda.device_count()))


@needs_two_gpus
def test_deepspeed_zero3_on_two_gpus(tmp_path):
    from tests.test_distributed_engines import ZERO3, assert_cut_run_resumes_exactly

    assert_cut_run_resumes_exactly(tmp_path, "--engine", "deepspeed", "--ds_config", ZERO3)


@needs_cuda
@pytest.mark.parametrize("accumulation", [None, 2])
def test_predictions_move_to_the_host_on_cuda(tmp_path, accumulation):
    """Outputs wait on the GPU for eval_accumulation_steps batches, then reach the host equal to the CPU's."""
    from tests.fixtures import RegressionModel

    data = RegressionDataset(37)
    trainer = Trainer(RegressionModel(a=2.0, b=1.0), regression_args(tmp_path, eval_accumulation_steps=accumulation,
                                                                     include_for_metrics=["inputs", "loss"]))
    out = trainer.predict(data)
    assert trainer.runtime.device.type == "cuda"
    assert out.predictions.shape == (37,) and type(out.predictions).__module__ == "numpy"
    torch.testing.assert_close(torch.from_numpy(out.predictions), 2 * torch.from_numpy(data.x) + 1)
