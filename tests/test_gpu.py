"""GPU-only checks (``pytest -m gpu``). CI has no GPU: these skip with a reason there; ``benchmarks/gpu/run.sh`` runs
them on a GPU machine and reports them."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from tests.fixtures import RegressionDataset, RegressionDropoutModel, regression_args
from tests.processes import run
from trainer import Trainer

pytestmark = pytest.mark.gpu
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
    pytest.importorskip("fairscale")
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


# -- mixed precision, resume, data transfer ------------------------------------------------------------------
def tiny_gpt2(**config):
    transformers = pytest.importorskip("transformers")
    values = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=128, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                  attn_pdrop=0.0)
    values.update(config)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**values))


def token_data(n: int = 64, length: int = 32) -> list[dict]:
    """Runs of consecutive token ids: a pattern the model learns within a few steps."""
    return [{"input_ids": (ids := (torch.arange(length) + i) % 128), "labels": ids} for i in range(n)]


@needs_cuda
def test_bf16_autocast_runs_the_matmuls_in_bf16_and_keeps_fp32_weights(tmp_path):
    dtypes = []
    model = tiny_gpt2()
    model.lm_head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    trainer = Trainer(model, regression_args(tmp_path, bf16=True, max_steps=4, per_device_train_batch_size=8,
                                             learning_rate=1e-3), train_dataset=token_data())
    trainer.train()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainer.model.parameters())
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))


@needs_cuda
def test_fp16_resume_is_bit_exact_with_the_grad_scaler_state(tmp_path):
    from tests.test_resume import assert_resume_parity

    straight, resumed = assert_resume_parity(tmp_path, 5, fp16=True)
    assert resumed.runtime.scaler is not None
    assert resumed.runtime.scaler.state_dict() == straight.runtime.scaler.state_dict()
    saved = torch.load(tmp_path / "cut" / "out" / "checkpoint-5" / "rng_state.pth", weights_only=False)
    assert "cuda" in saved  # the CUDA generator's state is part of the checkpoint


@needs_cuda
def test_batches_come_from_pinned_memory_onto_the_gpu(tmp_path):
    seen = []

    class Recording(RegressionDropoutModel):
        def forward(self, input_x, labels=None):
            seen.append(input_x.device.type)
            return super().forward(input_x, labels)

    trainer = Trainer(Recording(), regression_args(tmp_path, max_steps=2, dataloader_pin_memory=True),
                      train_dataset=RegressionDataset())
    assert trainer.get_train_dataloader().pin_memory
    trainer.train()
    assert seen == ["cuda", "cuda"]


@needs_cuda
def test_torch_compile_on_cuda_trains_as_eager(tmp_path):
    losses = {}
    for compiled in (False, True):
        trainer = Trainer(tiny_gpt2(), regression_args(tmp_path / str(compiled), torch_compile=compiled, max_steps=4,
                                                       per_device_train_batch_size=8, learning_rate=1e-3,
                                                       logging_steps=1), train_dataset=token_data())
        trainer.train()
        losses[compiled] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


@needs_cuda
def test_torch_empty_cache_steps_empties_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    Trainer(RegressionDropoutModel(), regression_args(tmp_path, max_steps=6, torch_empty_cache_steps=2),
            train_dataset=RegressionDataset()).train()
    assert len(calls) >= 3


# -- engines on one GPU -------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("engine", ["fsdp", "zero2", "zero3"])
def test_a_sharding_engine_trains_and_resumes_exactly_on_one_gpu(tmp_path, engine):
    import json

    from tests.test_distributed_engines import ZERO2, ZERO3, assert_cut_run_resumes_exactly

    if engine == "fsdp":
        assert_cut_run_resumes_exactly(tmp_path, "--engine", "fsdp", nproc=1)
        return
    pytest.importorskip("deepspeed")
    config = json.load(open(ZERO2 if engine == "zero2" else ZERO3))
    for key in ("optimizer", "scheduler"):  # the Trainer's AdamW: no DeepSpeed op to compile
        config.pop(key, None)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(config))
    assert_cut_run_resumes_exactly(tmp_path, "--engine", "deepspeed", "--ds_config", path, nproc=1)


# -- bitsandbytes, QLoRA, Liger -------------------------------------------------------------------------------
@needs_cuda
def test_bitsandbytes_8bit_adam_trains_on_cuda(tmp_path):
    pytest.importorskip("bitsandbytes")
    trainer = Trainer(tiny_gpt2(), regression_args(tmp_path, optim="adamw_bnb_8bit", max_steps=6,
                                                   per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1),
                      train_dataset=token_data())
    trainer.train()
    assert type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
                ).__module__.startswith("bitsandbytes")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]


@needs_cuda
def test_a_qlora_step_on_a_4bit_base(tmp_path):
    pytest.importorskip("bitsandbytes")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    tiny_gpt2().save_pretrained(tmp_path / "base")
    quantization = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_compute_dtype=torch.bfloat16)
    base = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base", quantization_config=quantization,
                                                        device_map={"": 0})
    model = peft.get_peft_model(peft.prepare_model_for_kbit_training(base),
                                peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True,
                                                task_type="CAUSAL_LM"))
    before = {k: v.clone() for k, v in peft.get_peft_model_state_dict(model).items()}
    trainer = Trainer(model, regression_args(tmp_path, bf16=True, max_steps=3, per_device_train_batch_size=8,
                                             learning_rate=1e-2, save_strategy="steps", save_steps=3),
                      train_dataset=token_data())
    trainer.train()
    after = peft.get_peft_model_state_dict(model)
    assert any(not torch.equal(before[k], after[k].to(before[k].device)) for k in before)
    assert os.path.exists(tmp_path / "out" / "checkpoint-3" / "adapter_model.safetensors")


@needs_cuda
def test_liger_kernel_patches_a_llama_and_trains(tmp_path):
    pytest.importorskip("liger_kernel")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64))
    trainer = Trainer(model, regression_args(tmp_path, use_liger_kernel=True, bf16=True, max_steps=3,
                                             per_device_train_batch_size=8, learning_rate=1e-3),
                      train_dataset=token_data())
    trainer.train()
    assert model.model.norm._get_name() == "LigerRMSNorm"  # liger rebinds the instance's methods
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))
