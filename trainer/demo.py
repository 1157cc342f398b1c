"""The bundled demo task of the quickstart, the README and the docs: scikit-learn's digits and a small CNN.

Installed with the package, so a snippet that uses it runs from any directory (``pip install -e
".[examples]"`` brings scikit-learn, whose bundled digits are the data: nothing is downloaded).

    from trainer.demo import DigitsCNN, compute_metrics, load_digits_splits
    train, val = load_digits_splits()           # 1,437 / 360 images of 8x8 pixels, 10 classes

``build()`` returns the Trainer's keyword arguments for it (the task of ``configs/quickstart.yaml``);
``word_tokenizer()`` and ``TokenBlocks`` are the offline tokenizer and the block dataset of the text examples.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .outputs import EvalPrediction


class DigitsDataset(torch.utils.data.Dataset):
    """Digits images scaled to [0, 1] as ``pixel_values`` (1x8x8) with integer ``labels``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.images[i], "labels": self.labels[i]}


def load_digits_splits(seed: int = 0) -> tuple[DigitsDataset, DigitsDataset]:
    """80/20 stratified split of the 1,797 digits images."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError("the digits demo needs scikit-learn: pip install scikit-learn (or the project's "
                          "[examples] extra)") from err

    data = load_digits()
    x_train, x_eval, y_train, y_eval = train_test_split(
        data.images, data.target, test_size=0.2, random_state=seed, stratify=data.target
    )
    return DigitsDataset(x_train, y_train), DigitsDataset(x_eval, y_eval)


class DigitsCNN(nn.Module):
    """Two conv blocks and a linear head; returns ``{"loss", "logits"}`` like a transformers model."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 4 * 4, num_classes))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.head(self.features(pixel_values))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def compute_metrics(pred: EvalPrediction) -> dict:
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def build(seed: int = 0) -> dict:
    """The task for ``trainforge train configs/quickstart.yaml``: model, datasets and metrics."""
    from .runtime import set_seed

    train_set, eval_set = load_digits_splits(seed)
    set_seed(seed)  # before the model is built, so its initial weights are reproducible
    return {"model": DigitsCNN(), "train_dataset": train_set, "eval_dataset": eval_set,
            "compute_metrics": compute_metrics}


class TokenBlocks(torch.utils.data.Dataset):
    """A token stream cut into blocks of ``block_size`` (the tail dropped); the labels are the inputs, as a
    causal LM shifts them itself."""

    def __init__(self, ids: list[int], block_size: int):
        n = len(ids) // block_size
        self.blocks = torch.tensor(ids[: n * block_size]).view(n, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def word_tokenizer(texts: list[str], bos_eos: bool = False):
    """A ``PreTrainedTokenizerFast`` over the words of ``texts`` (lower-cased), with pad/unk (and bos/eos): the
    offline stand-in of the text examples, whose online users load a real tokenizer with
    ``--model_name_or_path``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=special, min_frequency=1))
    if bos_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
