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
