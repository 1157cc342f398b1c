"""Checks run under ``torchrun --nproc_per_node=2`` (gloo): what each rank trains on, the averaged
result, distributed predict order, and the token-exact loss of a causal LM over both ranks (2 ranks x batch 2 x
accumulation 2, one SGD step: ``token_exact.pt``). Each rank writes ``rank{r}.json`` into --out."""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from tests.fixtures import RegressionDataset, RegressionModel  # noqa: E402
from trainer import Trainer, TrainingArguments  # noqa: E402


class IndexedRegression(RegressionDataset):
    """The regression samples with their index, so a rank's share of the data can be seen."""

    def __getitem__(self, i):
        return {**super().__getitem__(i), "index": i}


class RecordingModel(RegressionModel):
    """Records the sample indices of every training batch it sees."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def forward(self, input_x, labels=None, index=None):
        if self.training and index is not None:
            self.seen.extend(index.tolist())
        return super().forward(input_x, labels)


class IndexDataset(torch.utils.data.Dataset):
    """Sample i predicts exactly i: predict() must return range(N)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"input_x": torch.tensor(float(i)), "labels": torch.tensor(float(i))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    args = TrainingArguments(output_dir=os.path.join(opts.out, "run"), per_device_train_batch_size=4,
                             num_train_epochs=2, learning_rate=0.1, save_strategy="no", disable_tqdm=True,
                             per_device_eval_batch_size=3, seed=9)
    model = RecordingModel()
    trainer = Trainer(model, args, train_dataset=IndexedRegression(64))
    trainer.train()
    result = {
        "rank": trainer.runtime.process_index,
        "world": trainer.runtime.num_processes,
        "seen": model.seen,
        "a": model.a.item(),
        "b": model.b.item(),
        "predict": {},
    }
    identity = RegressionModel(a=1.0, b=0.0)
    for accumulation in (None, 2):
        eval_args = TrainingArguments(output_dir=os.path.join(opts.out, "eval"), per_device_eval_batch_size=3,
                                      eval_accumulation_steps=accumulation, disable_tqdm=True)
        evaluator = Trainer(identity, eval_args)
        for n in (7, 40, 101):
            out = evaluator.predict(IndexDataset(n))
            result["predict"][f"{n}-{accumulation}"] = {"preds": out.predictions.tolist(),
                                                        "labels": out.label_ids.tolist(),
                                                        "loss": out.metrics["test_loss"]}
    with open(os.path.join(opts.out, f"rank{result['rank']}.json"), "w") as f:
        json.dump(result, f)
    token_exact(opts.out)


def token_exact(out: str) -> None:
    """One optimizer step of tests/test_token_loss.py's GPT-2 over its 8 variable-length sequences, spread over
    2 ranks x 2 micro-batches of 2; rank 0 saves the weights."""
    from tests.test_token_loss import LR, gpt2, pad, sequences

    args = TrainingArguments(output_dir=os.path.join(out, "token_exact"), per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, max_steps=1, optim="sgd", learning_rate=LR,
                             lr_scheduler_type="constant", max_grad_norm=0.0, disable_tqdm=True, save_strategy="no",
                             train_sampling_strategy="sequential", logging_steps=1)
    trainer = Trainer(gpt2(), args, train_dataset=sequences(), data_collator=pad)
    trainer.train()
    if trainer.is_world_process_zero():
        torch.save({n: p.detach().clone() for n, p in trainer.model.named_parameters()},
                   os.path.join(out, "token_exact.pt"))


if __name__ == "__main__":
    main()
