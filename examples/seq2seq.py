"""Sequence-to-sequence with generation: Seq2SeqTrainer and predict_with_generate.

Offline default: a toy task (reverse a sequence of 2-5 words) with a word-level tokenizer and a
tiny T5 built from a config; metrics (exact match, word accuracy) are computed on the decoded
generated text. Online: ``--model_name_or_path t5-small`` and your own pairs with ``--dataset_name``
(a Hub dataset with ``--source_column`` / ``--target_column``).

    python examples/seq2seq.py [--num_train_epochs 10] [--model_name_or_path t5-small --dataset_name ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed  # noqa: E402
from trainer.argparsing import DataclassArgumentParser  # noqa: E402

WORDS = "red green blue cat dog sun moon tree".split()


def reversal_pairs(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sources = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(n)]
    return {"source": sources, "target": [" ".join(s.split()[::-1]) for s in sources]}


def text_metrics(tokenizer):
    """compute_metrics on decoded text: exact match and the fraction of words in place."""

    def compute(eval_pred) -> dict:
        labels = np.where(eval_pred.label_ids != -100, eval_pred.label_ids, tokenizer.pad_token_id)
        generated = tokenizer.batch_decode(eval_pred.predictions, skip_special_tokens=True)
        expected = tokenizer.batch_decode(labels, skip_special_tokens=True)
        exact = [g.strip() == e.strip() for g, e in zip(generated, expected)]
        words = [np.mean([a == b for a, b in zip(g.split(), e.split())]) if e.split() else 0.0
                 for g, e in zip(generated, expected)]
        return {"exact_match": float(np.mean(exact)), "word_accuracy": float(np.mean(words))}

    return compute


def build(opts, seed: int):
    import datasets
    import transformers

    if opts.dataset_name:  # online
        raw = datasets.load_dataset(opts.dataset_name)
        train_raw, eval_raw = raw["train"], raw["validation"]
        source, target = opts.source_column, opts.target_column
    else:
        train_raw = datasets.Dataset.from_dict(reversal_pairs(400, seed))
        eval_raw = datasets.Dataset.from_dict(reversal_pairs(48, seed + 1))
        source, target = "source", "target"
    if opts.model_name_or_path:
        tokenizer = transformers.AutoTokenizer.from_pretrained(opts.model_name_or_path)
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(opts.model_name_or_path)
    else:
        from tokenizers import processors

        from trainer.demo import word_tokenizer

        tokenizer = word_tokenizer(list(train_raw[source]) + list(train_raw[target]))
        eos = tokenizer.eos_token_id
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", eos)])
        set_seed(seed)
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2,
            decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
            dropout_rate=0.0))

    def encode(batch):
        return {**tokenizer(batch[source]), "labels": tokenizer(batch[target])["input_ids"]}

    train = train_raw.map(encode, batched=True, remove_columns=train_raw.column_names)
    evaluation = eval_raw.map(encode, batched=True, remove_columns=eval_raw.column_names)
    return model, tokenizer, train, evaluation


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--model_name_or_path", default=None)
    own.add_argument("--dataset_name", default=None)
    own.add_argument("--source_column", default="source")
    own.add_argument("--target_column", default="target")
    opts, rest = own.parse_known_args(argv)
    defaults = {"output_dir": "outputs/seq2seq", "overwrite_output_dir": True, "num_train_epochs": 10,
                "per_device_train_batch_size": 16, "per_device_eval_batch_size": 16, "learning_rate": 3e-3,
                "lr_scheduler_type": "constant", "eval_strategy": "epoch", "save_strategy": "no",
                "logging_strategy": "epoch", "predict_with_generate": True, "generation_max_length": 8, "seed": 0}
    (args,) = DataclassArgumentParser([Seq2SeqTrainingArguments], prog="seq2seq").parse(rest, defaults)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, tokenizer, train, evaluation = build(opts, args.seed)
    import transformers

    trainer = Seq2SeqTrainer(model, args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
                             data_collator=transformers.DataCollatorForSeq2Seq(tokenizer, model=model),
                             compute_metrics=text_metrics(tokenizer))
    trainer.train()
    metrics = trainer.evaluate()
    sample = trainer.predict(evaluation.select(range(3)))
    if trainer.is_world_process_zero():
        for ids, labels in zip(sample.predictions, sample.label_ids):
            labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
            print(f"{tokenizer.decode(labels, skip_special_tokens=True)!r:>32} <- generated "
                  f"{tokenizer.decode(ids, skip_special_tokens=True)!r}")
        print(f"exact match {metrics['eval_exact_match']:.3f}, word accuracy {metrics['eval_word_accuracy']:.3f}")
    return metrics


if __name__ == "__main__":
    main()
