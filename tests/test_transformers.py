"""transformers models: a tiny BERT built from a config and a local vocabulary (no download)."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from examples.text_classification import FILLER, WORDS, reviews  # noqa: E402
from tests.fixtures import RegressionDataset, RegressionModel, regression_args  # noqa: E402
from trainer import Trainer  # noqa: E402


def build_tokenizer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *(w for ws in WORDS.values() for w in ws)]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    try:  # transformers >= 5 takes the vocabulary file (or a dict) as `vocab`
        tokenizer = transformers.BertTokenizerFast(vocab=str(path))
    except TypeError:
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(path))
    assert tokenizer.convert_tokens_to_ids("good") != tokenizer.unk_token_id
    return tokenizer


def build_texts(n: int, seed: int):
    """The text-classification example's reviews: 3 classes of short sentences from a small vocabulary."""
    return datasets.Dataset.from_dict(reviews(n, seed))


def tiny_bert(tokenizer, dropout: float = 0.1):
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, num_labels=3, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def tokenized(tokenizer, n, seed):
    return build_texts(n, seed).map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True)


def accuracy(pred):
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def test_tiny_bert_fine_tunes_saves_and_runs_in_pipeline(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    train_set, eval_set = tokenized(tokenizer, 192, 0), tokenized(tokenizer, 48, 1)
    args = regression_args(tmp_path, learning_rate=2e-3, num_train_epochs=8, per_device_train_batch_size=16,
                           eval_strategy="epoch", logging_strategy="epoch", save_strategy="epoch",
                           save_total_limit=1, weight_decay=0.01, warmup_ratio=0.1)
    trainer = Trainer(tiny_bert(tokenizer), args, train_dataset=train_set, eval_dataset=eval_set,
                      processing_class=tokenizer, compute_metrics=accuracy)
    assert trainer.label_names == ["labels"]
    train_output = trainer.train()
    n_params = sum(p.numel() for n, p in trainer.model.named_parameters() if "embeddings" not in n)
    tokens = sum(len(ids) for ids in train_set["input_ids"])  # dynamic padding: padded lengths are >= these
    assert train_output.metrics["total_flos"] >= 6 * n_params * tokens * 8  # 8 epochs
    assert trainer.state.total_flos == train_output.metrics["total_flos"]
    metrics = trainer.evaluate()
    assert metrics["eval_accuracy"] >= 0.9, metrics
    assert metrics["eval_loss"] < 0.5

    test_set = tokenized(tokenizer, 12, 2)
    out = trainer.predict(test_set)
    assert out.predictions.shape == (12, 3) and out.label_ids.tolist() == list(test_set["label"])
    assert out.metrics["test_accuracy"] >= 0.8

    save_dir = tmp_path / "final"
    trainer.save_model(str(save_dir))
    assert (save_dir / "model.safetensors").exists() and (save_dir / "config.json").exists()
    assert (save_dir / "training_args.json").exists() and (save_dir / "tokenizer.json").exists()
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(save_dir))
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key

    classify = transformers.pipeline("text-classification", model=str(save_dir), device="cpu")
    texts = list(build_texts(12, 2)["text"])
    labels = [r["label"] for r in classify(texts)]
    expected = [reloaded.config.id2label[int(i)] for i in out.predictions.argmax(-1)]
    assert labels == expected


class CustomTrainer(Trainer):
    """The weighted-loss override from the Hugging Face Trainer docs, written against this package."""

    def compute_loss(self, model, inputs, return_outputs=False):
        labels = inputs.get("labels")
        outputs = model(**inputs)
        logits = outputs.get("logits")
        loss_fct = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
        loss = loss_fct(logits.view(-1, self.model.config.num_labels), labels.view(-1))
        return (loss, outputs) if return_outputs else loss


def test_weighted_loss_override_from_the_docs(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    train_set = tokenized(tokenizer, 32, 0)
    args = regression_args(tmp_path, learning_rate=0.0, max_steps=1, logging_steps=1, per_device_train_batch_size=8)
    trainer = CustomTrainer(tiny_bert(tokenizer, dropout=0.0), args, train_dataset=train_set, processing_class=tokenizer,
                            eval_dataset=train_set.select(range(8)))
    batch = next(iter(trainer.get_train_dataloader()))  # the sampler order is fixed by (seed, epoch)
    with torch.no_grad():
        logits = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    weighted = nn.functional.cross_entropy(logits, batch["labels"], weight=torch.tensor([1.0, 2.0, 3.0]))
    plain = nn.functional.cross_entropy(logits, batch["labels"])
    assert not torch.isclose(weighted, plain)
    trainer.train()
    assert trainer.state.log_history[0]["loss"] == pytest.approx(weighted.item(), rel=1e-5)
    with torch.no_grad():
        eval_logits = trainer.model(**tokenizer.pad(train_set.select(range(8)).remove_columns(["text", "label"])[:],
                                                    return_tensors="pt")).logits
    expected_eval = nn.functional.cross_entropy(eval_logits, torch.tensor(train_set["label"][:8]),
                                                weight=torch.tensor([1.0, 2.0, 3.0]))
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected_eval.item(), rel=1e-5)


def test_gradient_checkpointing_with_transformers_model(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    args = regression_args(tmp_path, gradient_checkpointing=True, max_steps=2, learning_rate=1e-3)
    trainer = Trainer(tiny_bert(tokenizer), args, train_dataset=tokenized(tokenizer, 16, 0), processing_class=tokenizer)
    trainer.train()
    model = trainer.model
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing


def test_sharded_save_pretrained_weights_load_back(tmp_path):
    from trainer.checkpoint import load_model_weights

    tokenizer = build_tokenizer(tmp_path)
    model = tiny_bert(tokenizer)
    model.save_pretrained(str(tmp_path / "sharded"), max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    fresh = tiny_bert(tokenizer)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    load_model_weights(fresh, str(tmp_path / "sharded"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    (tmp_path / "sharded" / "model.safetensors.index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no model.safetensors \(nor model.safetensors.index.json\)"):
        load_model_weights(fresh, str(tmp_path / "sharded"))


@pytest.mark.skipif(shutil.which("cc") is None, reason="inductor compiles C++ kernels: no C compiler here")
def test_torch_compile_with_inductor_trains_a_small_gpt2_as_eager_and_resumes_exactly(tmp_path, restore_determinism):
    from safetensors.torch import load_file

    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    data = [{"input_ids": torch.arange(i, i + 12) % 64, "labels": torch.arange(i, i + 12) % 64} for i in range(32)]

    def run(compiled, resume=None):
        # each run compiles afresh, as a resumed run does in its own process; compiled runs are bit-reproducible
        # only with full_determinism (inductor's CPU kernels add the embedding's gradient atomically across threads)
        torch._dynamo.reset()
        torch.manual_seed(0)
        args = regression_args(tmp_path / f"compiled_{compiled}", torch_compile=compiled, full_determinism=compiled,
                               max_steps=4,
                               per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=2,
                               save_strategy="steps", save_steps=2)
        trainer = Trainer(transformers.GPT2LMHeadModel(config), args, train_dataset=data, eval_dataset=data[:8])
        trainer.train(resume_from_checkpoint=resume)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        return trainer, losses, {k: v.clone() for k, v in trainer.model.state_dict().items()}

    eager, eager_losses, eager_weights = run(False)
    compiled, losses, weights = run(True)
    assert type(compiled.model_wrapped).__name__ == "OptimizedModule" and compiled.model_wrapped._orig_mod is \
        compiled.model
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    for name, value in eager_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5)
    assert compiled.evaluate()["eval_loss"] == pytest.approx(eager.evaluate()["eval_loss"], rel=1e-5)
    checkpoint = tmp_path / "compiled_True" / "out" / "checkpoint-2"
    assert set(load_file(str(checkpoint / "model.safetensors"))) == set(load_file(
        str(tmp_path / "compiled_False" / "out" / "checkpoint-2" / "model.safetensors")))  # no _orig_mod. prefix
    _, resumed_losses, resumed = run(True, resume=str(checkpoint))
    assert resumed_losses == losses
    for name, value in weights.items():
        assert torch.equal(resumed[name], value), name


def test_liger_kernel_is_refused_without_a_gpu_and_patched_into_the_base_model_with_one(tmp_path, monkeypatch, caplog):
    import sys
    import types

    import trainer.trainer as trainer_module

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    args = regression_args(tmp_path, use_liger_kernel=True, liger_kernel_config='{"rope": true}', max_steps=1,
                           per_device_train_batch_size=2)
    assert args.liger_kernel_config == {"rope": True}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use_liger_kernel=True needs a CUDA GPU \\(Liger's kernels are Triton GPU "
                                             "kernels\\), and this machine has no CUDA GPU; unset use_liger_kernel"):
            Trainer(model, args)
    with pytest.raises(ValueError, match="and use_cpu=True runs on the CPU"):
        Trainer(model, regression_args(tmp_path, use_liger_kernel=True, use_cpu=True))
    # the wiring, with liger's entry point recorded and the GPU check passed (the kernels run in tests/test_gpu.py)
    calls = []
    liger = types.ModuleType("liger_kernel")
    liger.transformers = types.SimpleNamespace(_apply_liger_kernel_to_instance=lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "liger_kernel", liger)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", liger.transformers)
    monkeypatch.setattr(trainer_module, "check_liger_kernel", lambda args: None)
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["c_attn"]))
    data = [{"input_ids": torch.arange(8), "labels": torch.arange(8)}] * 2
    Trainer(lora, args, train_dataset=data).train()
    assert calls == [{"model": model, "rope": True}]  # the PEFT model's base, with the config's options
    with caplog.at_level("WARNING"):
        Trainer(RegressionModel(), regression_args(tmp_path / "plain", use_liger_kernel=True, max_steps=1),
                train_dataset=RegressionDataset(8)).train()
    assert len(calls) == 1 and "RegressionModel is not a transformers PreTrainedModel, so no Liger kernel" in caplog.text
