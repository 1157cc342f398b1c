"""Evaluation throughput: ``evaluate()`` samples/s with ``compute_metrics``, trainforge and transformers' Trainer
against a raw ``torch.no_grad()`` loop doing the same work.

The raw loop is what a careful user writes: ``model.eval()``, batches from a DataLoader, the logits and labels
of every batch kept (on the host), concatenated once, then ``compute_metrics`` on them. The trainers do the same
through ``evaluate()``, also computing the loss (the raw loop computes it too: the models return it). Two models:
the benchmarks' 2-layer encoder (d=128, sequences of 64, 4 classes) and the quickstart's CNN on the digits (its
360 evaluation images repeated 10 times, so one pass is not a few milliseconds). trainforge is also measured with
``eval_accumulation_steps=4`` and with ``preprocess_logits_for_metrics`` (argmax). Runs alternate in rounds; each
row is the median over rounds of the ratio within a round, one torch thread.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.steps import Encoder, Samples, encoder_data  # noqa: E402

BATCH = 64


class EvalEncoder(Encoder):
    """The encoder, returning its logits too."""

    def forward(self, input_ids, labels):
        logits = self.head(self.encoder(self.embed(input_ids)).mean(1))
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def accuracy(pred) -> dict:
    predictions = pred.predictions
    if predictions.ndim > 1:
        predictions = predictions.argmax(-1)
    return {"accuracy": float((predictions == pred.label_ids).mean())}


def argmax_logits(logits, labels):
    return logits.argmax(-1)


def cases(quick: bool) -> dict:
    """``{name: (model, dataset)}``."""
    from trainer.demo import DigitsCNN, load_digits_splits

    torch.manual_seed(0)
    encoder = (EvalEncoder(), encoder_data(256 if quick else 2048))
    _, digits = load_digits_splits(0)
    repeat = 1 if quick else 10
    images = torch.cat([digits.images] * repeat)
    labels = torch.cat([digits.labels] * repeat)
    return {"encoder 2x128, seq 64": encoder, "quickstart CNN, digits x10": (
        DigitsCNN().eval(), Samples({"pixel_values": images, "labels": labels}))}


def raw_eval(model, dataset) -> float:
    from trainer import EvalPrediction

    start = time.perf_counter()
    model.eval()
    logits, labels, losses = [], [], []
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(dataset, batch_size=BATCH):
            out = model(**batch)
            losses.append(out["loss"] * len(batch["labels"]))
            logits.append(out["logits"])
            labels.append(batch["labels"])
    predictions, label_ids = torch.cat(logits).numpy(), torch.cat(labels).numpy()
    metrics = accuracy(EvalPrediction(predictions, label_ids))
    metrics["loss"] = float(torch.stack(losses).sum()) / len(label_ids)
    elapsed = time.perf_counter() - start
    assert np.isfinite(metrics["loss"])
    return len(dataset) / elapsed


def _trainer_eval(lib: str, model, dataset, **extra) -> float:
    if lib == "trainforge":
        from trainer import PrinterCallback, Trainer, TrainingArguments
    else:
        from transformers import PrinterCallback, Trainer, TrainingArguments

        extra["use_cpu"] = True
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_eval_batch_size=BATCH, report_to="none", disable_tqdm=True,
                                 **{k: v for k, v in extra.items() if k != "preprocess_logits_for_metrics"})
        trainer = Trainer(model=model, args=args, eval_dataset=dataset, compute_metrics=accuracy,
                          preprocess_logits_for_metrics=extra.get("preprocess_logits_for_metrics"))
        trainer.remove_callback(PrinterCallback)  # no log lines
        start = time.perf_counter()
        metrics = trainer.evaluate()
        elapsed = time.perf_counter() - start
    assert "eval_accuracy" in metrics
    return len(dataset) / elapsed


VARIANTS = {
    "trainforge": lambda m, d: _trainer_eval("trainforge", m, d),
    "trainforge, eval_accumulation_steps=4": lambda m, d: _trainer_eval("trainforge", m, d, eval_accumulation_steps=4),
    "trainforge, preprocess_logits_for_metrics": lambda m, d: _trainer_eval(
        "trainforge", m, d, preprocess_logits_for_metrics=argmax_logits),
    "transformers": lambda m, d: _trainer_eval("transformers", m, d),
}


def measure(repeats: int, with_hf: bool, quick: bool = False) -> dict:
    """``{case: {"raw": median samples/s, variant: [ratios to raw, one per round]}}``."""
    torch.set_num_threads(1)
    variants = {k: v for k, v in VARIANTS.items() if with_hf or k != "transformers"}
    results = {}
    for name, (model, dataset) in cases(quick).items():
        raw_loop_rate, ratios = [], {k: [] for k in variants}
        raw_eval(model, dataset)  # warm-up: the first forward builds the kernels, the first evaluate() imports
        for variant in variants.values():
            variant(model, dataset)
        for round_index in range(repeats):
            order = list(variants) if round_index % 2 == 0 else list(variants)[::-1]
            raw = raw_eval(model, dataset)
            raw_loop_rate.append(raw)
            for variant in order:
                ratios[variant].append(variants[variant](model, dataset) / raw)
        results[name] = {"raw": statistics.median(raw_loop_rate), **ratios}
    return results


if __name__ == "__main__":
    for case, values in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 3, with_hf=True).items():
        print(case, f"raw {values['raw']:.0f} samples/s",
              {k: round(statistics.median(v), 3) for k, v in values.items() if k != "raw"})
