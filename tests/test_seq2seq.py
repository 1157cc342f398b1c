"""Seq2SeqTrainer with a tiny T5 built from a config and a word-level tokenizer (no download).

The task: reverse a sequence of 2-5 words. Ten epochs over 400 samples teach it well enough for
exact-match on decoded text to be far from zero.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

from tests.fixtures import RegressionDataset, RegressionModel  # noqa: E402
from trainer import Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

WORDS = "red green blue cat dog sun moon tree".split()
PAD, EOS = 0, 1


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": PAD, "</s>": EOS, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>")


def reversal_data(tokenizer, n: int, seed: int):
    rng = np.random.default_rng(seed)
    sources = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(n)]
    targets = [" ".join(s.split()[::-1]) for s in sources]
    data = datasets.Dataset.from_dict({"source": sources, "target": targets})
    return data.map(lambda b: {**tokenizer(b["source"]), "labels": tokenizer(b["target"])["input_ids"]},
                    batched=True, remove_columns=["source", "target"])


def tiny_t5():
    config = transformers.T5Config(vocab_size=3 + len(WORDS), d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
                                   num_decoder_layers=2, decoder_start_token_id=PAD, pad_token_id=PAD,
                                   eos_token_id=EOS, dropout_rate=0.0)
    torch.manual_seed(0)
    return transformers.T5ForConditionalGeneration(config)


def decoded_exact_match(tokenizer):
    """compute_metrics on decoded text: the fraction of generated strings equal to the target."""

    def compute_metrics(eval_pred) -> dict:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        generated = tokenizer.batch_decode(preds, skip_special_tokens=True)
        expected = tokenizer.batch_decode(labels, skip_special_tokens=True)
        return {"exact_match": float(np.mean([g == e for g, e in zip(generated, expected)]))}

    return compute_metrics


def s2s_args(path, **overrides):
    values = dict(output_dir=str(path), per_device_train_batch_size=16, per_device_eval_batch_size=8,
                  learning_rate=3e-3, num_train_epochs=10, lr_scheduler_type="constant", predict_with_generate=True,
                  generation_max_length=8, save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=50)
    values.update(overrides)
    return Seq2SeqTrainingArguments(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tokenizer = build_tokenizer()
    model = tiny_t5()
    trainer = Seq2SeqTrainer(
        model, s2s_args(tmp_path_factory.mktemp("s2s")), train_dataset=reversal_data(tokenizer, 400, 0),
        data_collator=transformers.DataCollatorForSeq2Seq(tokenizer, model=model), processing_class=tokenizer,
        compute_metrics=decoded_exact_match(tokenizer),
    )
    trainer.train()
    return trainer, tokenizer


def generate_by_hand(trainer, dataset, **gen_kwargs) -> list[list[int]]:
    """Each sample's generated ids up to and including its first EOS, from model.generate per batch."""
    rows = []
    model = trainer.model.eval()
    for batch in trainer.get_test_dataloader(dataset):
        with torch.no_grad():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **gen_kwargs)
        for row in out.tolist():
            rows.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return rows


def test_predict_with_generate_pads_generated_ids_with_the_pad_id_and_scores_decoded_text(trained):
    trainer, tokenizer = trained
    test = reversal_data(tokenizer, 20, seed=7)  # batches of 8, 8, 4: each batch generates its own width
    out = trainer.predict(test)
    preds = out.predictions
    assert preds.dtype == np.int64 and preds.shape[0] == 20 and preds.shape[1] <= 8
    assert not (preds == -100).any()  # one padding value: the pad id, within and across batches
    expected_rows = generate_by_hand(trainer, test, max_length=8)
    assert preds.shape[1] == max(len(r) for r in expected_rows)
    for row, expected in zip(preds.tolist(), expected_rows):
        assert row == expected + [PAD] * (preds.shape[1] - len(expected))
    labels = out.label_ids
    assert labels.shape == (20, max(len(x) for x in test["labels"])) and (labels == -100).any()
    decoded = tokenizer.batch_decode(preds, skip_special_tokens=True)
    targets = [tokenizer.decode(x, skip_special_tokens=True) for x in test["labels"]]
    exact = float(np.mean([d == t for d, t in zip(decoded, targets)]))
    assert out.metrics["test_exact_match"] == exact
    assert exact >= 0.3  # it learned to reverse (an untrained model scores 0)
    assert out.metrics["test_loss"] > 0


def test_generation_settings_from_arguments_keyword_arguments_and_a_config_file(trained, tmp_path):
    trainer, tokenizer = trained
    test = reversal_data(tokenizer, 12, seed=8)
    trainer.args.generation_num_beams = 3
    try:
        beams = trainer.predict(test).predictions
        expected = generate_by_hand(trainer, test, max_length=8, num_beams=3)
        assert [r[: len(e)] for r, e in zip(beams.tolist(), expected)] == expected
        short = trainer.predict(test, max_new_tokens=2).predictions  # keyword arguments win over the args
        assert short.shape[1] <= 3  # the decoder start token and 2 new ones
    finally:
        trainer.args.generation_num_beams = None
    transformers.GenerationConfig(max_length=4, decoder_start_token_id=PAD, pad_token_id=PAD,
                                  eos_token_id=EOS).save_pretrained(tmp_path / "gen")
    args = s2s_args(tmp_path / "out", generation_max_length=None, generation_config=str(tmp_path / "gen"))
    from_file = Seq2SeqTrainer(trainer.model, args, processing_class=tokenizer,
                               data_collator=trainer.data_collator).predict(test)
    assert from_file.predictions.shape[1] <= 4 and trainer.model.generation_config.max_length == 4
    assert json.loads(args.to_json_string())["generation_config"] == str(tmp_path / "gen")


def test_evaluate_without_generation_returns_the_loss_and_logits(trained, tmp_path):
    trainer, tokenizer = trained
    args = s2s_args(tmp_path, predict_with_generate=False)
    plain = Seq2SeqTrainer(trainer.model, args, processing_class=tokenizer, data_collator=trainer.data_collator)
    out = plain.predict(reversal_data(tokenizer, 8, seed=9))
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    assert logits.ndim == 3 and logits.shape[-1] == 3 + len(WORDS)
    generated = trainer.evaluate(reversal_data(tokenizer, 8, seed=9))
    assert generated["eval_loss"] == pytest.approx(out.metrics["test_loss"], rel=1e-6)


def test_seq2seq_bad_input(tmp_path):
    with pytest.raises(ValueError, match="generation_max_length=0 must be a whole number >= 1"):
        s2s_args(tmp_path, generation_max_length=0)
    with pytest.raises(ValueError, match="predict_with_generate=True, but RegressionModel has no generate"):
        Seq2SeqTrainer(RegressionModel(), s2s_args(tmp_path))
    trainer = Seq2SeqTrainer(RegressionModel(a=1.0), s2s_args(tmp_path, predict_with_generate=False))
    assert trainer.predict(RegressionDataset(8)).predictions.shape == (8,)  # a plain model without generation
