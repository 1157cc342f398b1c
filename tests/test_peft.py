"""PEFT LoRA models: adapter-only checkpoints that resume bit-exactly, the best adapter restored at the end,
save_model's adapter files loading back with peft, and `trainforge checkpoints` telling adapter checkpoints."""

from __future__ import annotations

import json
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from tests.test_resume import StopAt  # noqa: E402
from trainer import Trainer, TrainingArguments  # noqa: E402
from trainer.run_files import describe_checkpoints  # noqa: E402


def gpt2():
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                                                n_positions=32))


def lora_gpt2(dropout: float = 0.1):
    """A 2-layer GPT-2 with LoRA on its attention (dropout in the model and the adapter: the RNG matters)."""
    base = gpt2()
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=dropout, fan_in_fan_out=True,
                           task_type="CAUSAL_LM")
    return peft.get_peft_model(base, lora)


def token_data(n: int = 40, seed: int = 1) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [{"input_ids": (ids := torch.randint(0, 64, (16,), generator=generator)), "labels": ids} for _ in range(n)]


def lora_args(out, **overrides) -> TrainingArguments:
    values = dict(max_steps=10, per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=5, report_to="none",
                  disable_tqdm=True, save_strategy="no")
    values.update(overrides)
    return TrainingArguments(str(out), **values)


def adapter_state(model) -> dict:
    return {k: v.clone() for k, v in peft.get_peft_model_state_dict(model).items()}


def test_a_lora_run_cut_at_step_5_resumes_bit_exactly_from_its_adapter_checkpoint(tmp_path):
    straight = Trainer(lora_gpt2(), lora_args(tmp_path / "straight"), train_dataset=token_data())
    straight.train()
    cut = Trainer(lora_gpt2(), lora_args(tmp_path / "cut", save_strategy="steps", save_steps=5),
                  train_dataset=token_data(), callbacks=[StopAt(5)])
    cut.train()
    checkpoint = tmp_path / "cut" / "checkpoint-5"
    files = set(os.listdir(checkpoint))
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt",
            "trainer_state.json"} <= files
    assert not any(f.startswith("model") for f in files)  # the frozen base is not written
    assert json.loads((checkpoint / "adapter_config.json").read_text())["r"] == 4
    resumed = Trainer(lora_gpt2(), lora_args(tmp_path / "cut"), train_dataset=token_data())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    theirs, ours = adapter_state(straight.model), adapter_state(resumed.model)
    assert theirs.keys() == ours.keys() and len(theirs) == 4  # A and B of c_attn in two layers
    for key, value in theirs.items():
        assert torch.equal(value, ours[key]), key
    for a, b in zip(straight.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert [h["loss"] for h in straight.state.log_history if "loss" in h] == [
        h["loss"] for h in resumed.state.log_history if "loss" in h]
    rows = {r["name"]: r for r in describe_checkpoints(str(tmp_path / "cut"))}
    assert rows["checkpoint-5"]["weights"] == "adapter"


class ScriptedLoss:
    """compute_metrics whose 'score' is best (lowest) at the second evaluation."""

    def __init__(self):
        self.values = [3.0, 1.0, 2.0, 2.5, 2.7]

    def __call__(self, prediction):
        return {"score": self.values.pop(0)}


def test_load_best_model_at_end_restores_the_best_adapter_and_save_model_writes_adapter_files(tmp_path):
    trainer = Trainer(lora_gpt2(), lora_args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                                             save_steps=2, load_best_model_at_end=True, metric_for_best_model="score",
                                             greater_is_better=False),
                      train_dataset=token_data(), eval_dataset=token_data(8, seed=2), compute_metrics=ScriptedLoss())
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-4")
    from safetensors.torch import load_file

    best = load_file(str(tmp_path / "checkpoint-4" / "adapter_model.safetensors"))
    final = adapter_state(trainer.model)
    assert best.keys() == final.keys()
    for key, value in best.items():
        assert torch.equal(value, final[key]), key
    trainer.save_model(str(tmp_path / "saved"))
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(os.listdir(tmp_path / "saved"))
    reloaded = peft.PeftModel.from_pretrained(gpt2(), str(tmp_path / "saved"))  # the same seed: the same base
    for key, value in adapter_state(reloaded).items():
        assert torch.equal(value, final[key]), key


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_with_adapters_trains_as_without(tmp_path, reentrant):
    plain = Trainer(lora_gpt2(), lora_args(tmp_path / "plain", max_steps=4), train_dataset=token_data())
    plain.train()
    checkpointed = Trainer(lora_gpt2(), lora_args(tmp_path / "gc", max_steps=4, gradient_checkpointing=True,
                                                  gradient_checkpointing_kwargs={"use_reentrant": reentrant}),
                           train_dataset=token_data())
    checkpointed.train()
    initial, expected = adapter_state(lora_gpt2()), adapter_state(plain.model)
    for key, value in adapter_state(checkpointed.model).items():
        assert not torch.equal(value, initial[key]), key  # the adapters got gradients through the checkpoints
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)


def test_two_adapters_and_modules_to_save_resume_bit_exactly(tmp_path):
    """A classifier with a trained head (modules_to_save) and a second adapter: both adapters are written (the
    second in its own folder, as peft does) and both come back on resume."""
    def model():
        torch.manual_seed(0)
        base = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(
            n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32, num_labels=3, pad_token_id=0))
        config = peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, modules_to_save=["score"],
                                 task_type="SEQ_CLS")
        wrapped = peft.get_peft_model(base, config)
        wrapped.add_adapter("second", peft.LoraConfig(r=2, target_modules=["c_fc"], fan_in_fan_out=True))
        return wrapped

    generator = torch.Generator().manual_seed(5)
    data = [{"input_ids": torch.randint(1, 64, (12,), generator=generator), "labels": i % 3} for i in range(24)]
    straight = Trainer(model(), lora_args(tmp_path / "straight", max_steps=6), train_dataset=data)
    straight.train()
    cut = Trainer(model(), lora_args(tmp_path / "cut", max_steps=6, save_strategy="steps", save_steps=3),
                  train_dataset=data, callbacks=[StopAt(3)])
    cut.train()
    checkpoint = tmp_path / "cut" / "checkpoint-3"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert (checkpoint / "second" / "adapter_model.safetensors").is_file()
    resumed = Trainer(model(), lora_args(tmp_path / "cut", max_steps=6), train_dataset=data)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for adapter in ("default", "second"):
        theirs = peft.get_peft_model_state_dict(straight.model, adapter_name=adapter)
        ours = peft.get_peft_model_state_dict(resumed.model, adapter_name=adapter)
        assert theirs.keys() == ours.keys()
        for key, value in theirs.items():
            assert torch.equal(value, ours[key]), (adapter, key)
    assert any("score" in key for key in peft.get_peft_model_state_dict(straight.model))  # the head is saved


def test_a_search_over_a_lora_model_builds_a_fresh_adapter_per_trial(tmp_path):
    optuna = pytest.importorskip("optuna")
    built = []

    def model_init(trial=None):
        built.append(lora_gpt2(dropout=0.0))
        return built[-1]

    args = lora_args(tmp_path, max_steps=3, eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=3)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=token_data(16), eval_dataset=token_data(8, seed=2))
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)},
        n_trials=2, direction="minimize", backend="optuna", sampler=optuna.samplers.RandomSampler(seed=0))
    assert best.objective is not None and len({id(m) for m in built}) == len(built) == 3  # init + each trial
    initial = adapter_state(lora_gpt2(dropout=0.0))
    first, second = adapter_state(built[1]), adapter_state(built[2])
    key = next(k for k in initial if "lora_B" in k)
    # each trial trained a fresh adapter of its own (B starts at zero; the learning rates differ)
    assert not torch.equal(first[key], initial[key]) and not torch.equal(first[key], second[key])
    assert os.path.isfile(tmp_path / f"run-{best.run_id}" / "checkpoint-3" / "adapter_model.safetensors")


def saved_tiny_gpt2(path) -> str:
    """A small GPT-2 on disk, 64 wide (bitsandbytes' CPU 4-bit kernels fail on a 32-wide one)."""
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=64,
                                                         n_positions=32)).save_pretrained(path)
    return str(path)


def qlora_gpt2(path, bits: int):
    """The GPT-2 loaded back quantized by bitsandbytes (4-bit NF4 or 8-bit) with LoRA on top: QLoRA."""
    pytest.importorskip("bitsandbytes")
    if bits == 4:
        quantization = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_compute_dtype=torch.float32)
    else:
        quantization = transformers.BitsAndBytesConfig(load_in_8bit=True)
    base = transformers.GPT2LMHeadModel.from_pretrained(path, quantization_config=quantization)
    base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    torch.manual_seed(0)
    return peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["c_attn"], lora_dropout=0.1,
                                                     fan_in_fan_out=True, task_type="CAUSAL_LM"))


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_on_a_bitsandbytes_base_trains_and_resumes_bit_exactly(tmp_path, bits):
    path = saved_tiny_gpt2(tmp_path / "base")
    # evaluated before and during training (bitsandbytes repacks a 4-bit weight at an evaluation on the CPU)
    straight = Trainer(qlora_gpt2(path, bits), lora_args(tmp_path / "straight", max_steps=6, eval_strategy="steps",
                                                         eval_steps=3),
                       train_dataset=token_data(), eval_dataset=token_data()[:8])
    assert type(straight.model.base_model.model.transformer.h[0].mlp.c_fc).__name__.startswith(f"Linear{bits}bit")
    before = straight.evaluate()["eval_loss"]
    straight.train()
    assert straight.evaluate()["eval_loss"] < before
    cut = Trainer(qlora_gpt2(path, bits), lora_args(tmp_path / "cut", max_steps=6, save_strategy="steps",
                                                    save_steps=3), train_dataset=token_data(), callbacks=[StopAt(3)])
    cut.train()
    files = set(os.listdir(tmp_path / "cut" / "checkpoint-3"))
    assert "adapter_model.safetensors" in files and not any(f.startswith("model") for f in files)
    resumed = Trainer(qlora_gpt2(path, bits), lora_args(tmp_path / "cut", max_steps=6), train_dataset=token_data())
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-3"))
    expected, got = adapter_state(straight.model), adapter_state(resumed.model)
    assert sorted(got) == sorted(expected) and all(torch.equal(got[k], expected[k]) for k in expected)


def test_a_quantized_model_without_adapters_is_refused_before_training(tmp_path):
    pytest.importorskip("bitsandbytes")
    path = saved_tiny_gpt2(tmp_path / "base")
    quantized = transformers.GPT2LMHeadModel.from_pretrained(
        path, quantization_config=transformers.BitsAndBytesConfig(load_in_8bit=True))
    trainer = Trainer(quantized, lora_args(tmp_path / "out"), train_dataset=token_data())
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel is quantized \(bitsandbytes\) and has no adapter: its "
                                         r"quantized weights cannot be trained. Attach LoRA adapters first \(QLoRA\)"):
        trainer.train()
    assert not os.path.exists(tmp_path / "out" / "checkpoint-10")


def test_a_4bit_weight_repacked_by_an_inference_forward_before_the_trainer_still_trains(tmp_path):
    model = qlora_gpt2(saved_tiny_gpt2(tmp_path / "base"), 4)
    layer = model.base_model.model.transformer.h[0].mlp.c_fc
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.arange(8)[None])
    if not getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
        pytest.skip("bitsandbytes repacks 4-bit weights for inference only on CPUs with AVX512-BF16")
    trainer = Trainer(model, lora_args(tmp_path / "out", max_steps=2), train_dataset=token_data())
    assert not layer.weight.quant_state.packing_format_for_cpu  # back in the layout that trains
    trainer.train()  # transformers' Trainer fails here: "a view of a leaf Variable ... in-place operation"
    assert trainer.state.global_step == 2 and not layer.support_avx512bf16_for_cpu
