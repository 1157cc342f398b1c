"""Text classification with a ``transformers`` model, evaluated with the offline ``evaluate`` metrics.

Offline default: short movie-review-like sentences generated from a small vocabulary (3 classes),
a word-level tokenizer trained on them and a tiny BERT built from a config. Online:
``--model_name_or_path bert-base-uncased --dataset_name imdb`` (any Hub model and dataset with
``text`` and ``label`` columns).

Metrics use an ``evaluate`` module fed batch by batch (``trainer.local_metrics``: accuracy and
macro F1 from local scripts, no Hub access), with ``preprocess_logits_for_metrics=argmax`` so
only class ids are kept.

    python examples/text_classification.py [--num_train_epochs 5] [--model_name_or_path ... --dataset_name ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import Trainer, set_seed  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.local_metrics import argmax_logits, load_metric  # noqa: E402

WORDS = {0: ["bad", "awful", "poor", "boring", "sad"], 1: ["fine", "okay", "plain", "average", "usual"],
         2: ["good", "great", "superb", "fun", "happy"]}
FILLER = ["the", "movie", "was", "a", "film", "plot", "very", "really"]


def reviews(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(0, 3))
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 6)))) + list(rng.choice(WORDS[label], size=2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return {"text": texts, "label": labels}


def build(model_name_or_path: str | None, dataset_name: str | None, seed: int):
    import datasets
    import transformers

    if dataset_name:  # online
        raw = datasets.load_dataset(dataset_name)
        train_raw, eval_raw = raw["train"], raw["test"] if "test" in raw else raw["validation"]
    else:
        train_raw = datasets.Dataset.from_dict(reviews(600, seed))
        eval_raw = datasets.Dataset.from_dict(reviews(150, seed + 1))
    num_labels = len(set(train_raw["label"]))
    if model_name_or_path:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_name_or_path)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_name_or_path,
                                                                                num_labels=num_labels)
    else:
        from examples.tiny_text import word_tokenizer

        tokenizer = word_tokenizer(list(train_raw["text"]))
        set_seed(seed)
        model = transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
            pad_token_id=tokenizer.pad_token_id))
    encode = lambda batch: tokenizer(batch["text"], truncation=True, max_length=128)  # noqa: E731
    return (model, tokenizer, train_raw.map(encode, batched=True, remove_columns=["text"]),
            eval_raw.map(encode, batched=True, remove_columns=["text"]))


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--model_name_or_path", default=None, help="a Hub model (online); default: a tiny BERT")
    own.add_argument("--dataset_name", default=None, help="a Hub dataset with text/label (online)")
    opts, rest = own.parse_known_args(argv)
    args = parse_training_args(rest, {
        "output_dir": "outputs/text_classification", "overwrite_output_dir": True, "num_train_epochs": 5,
        "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64, "learning_rate": 2e-3,
        "eval_strategy": "epoch", "save_strategy": "epoch", "save_total_limit": 1, "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy", "logging_strategy": "epoch", "seed": 0,
    })
    import evaluate

    model, tokenizer, train, evaluation = build(opts.model_name_or_path, opts.dataset_name, args.seed)
    metric = evaluate.combine([load_metric("accuracy"), load_metric("f1", "macro")])
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
                      compute_metrics=metric, preprocess_logits_for_metrics=argmax_logits)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        print(f"eval accuracy {metrics['eval_accuracy']:.3f}, macro F1 {metrics['eval_f1']:.3f}")
    return metrics


if __name__ == "__main__":
    main()
