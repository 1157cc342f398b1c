"""Causal language modeling on a local text file, with perplexity (exp of the eval loss).

Offline default: this repository's documentation (README.md and docs/*.md, about 1,000 lines) as
the corpus, a word-level tokenizer trained on it and a tiny GPT-2 built from a config. Online:
``--model_name_or_path gpt2`` loads a real tokenizer and model from the Hub, and ``--text_file``
points to your corpus (one or more files).

    python examples/causal_lm.py [--text_file corpus.txt ...] [--block_size 64] [--model_name_or_path gpt2]
                                 [any TrainingArguments flag]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from trainer import Trainer, set_seed  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.demo import TokenBlocks  # noqa: E402


def default_corpus() -> list[str]:
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(docs, name) for name in os.listdir(docs) if name.endswith(".md"))


def build(text_files: list[str], block_size: int, model_name_or_path: str | None, seed: int):
    import transformers

    lines = []
    for path in text_files:
        with open(path, encoding="utf-8") as f:
            lines += [line for line in f.read().splitlines() if line.strip()]
    if model_name_or_path:  # online: a real tokenizer and model from the Hub
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_name_or_path)
        model = transformers.AutoModelForCausalLM.from_pretrained(model_name_or_path)
    else:
        from trainer.demo import word_tokenizer

        tokenizer = word_tokenizer(lines)
        set_seed(seed)
        config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=block_size, n_embd=64, n_layer=2,
                                         n_head=2, bos_token_id=tokenizer.bos_token_id,
                                         eos_token_id=tokenizer.eos_token_id)
        model = transformers.GPT2LMHeadModel(config)
    ids = [i for line in lines for i in tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = TokenBlocks(ids, block_size)
    n_eval = max(1, len(blocks) // 10)
    generator = torch.Generator().manual_seed(seed)
    eval_set, train_set = torch.utils.data.random_split(blocks, [n_eval, len(blocks) - n_eval], generator=generator)
    return model, tokenizer, train_set, eval_set


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--text_file", nargs="+", default=None, help="default: README.md and docs/*.md")
    own.add_argument("--block_size", type=int, default=64)
    own.add_argument("--model_name_or_path", default=None, help="a Hub model (online); default: a tiny GPT-2")
    opts, rest = own.parse_known_args(argv)
    args = parse_training_args(rest, {
        "output_dir": "outputs/causal_lm", "overwrite_output_dir": True, "num_train_epochs": 10,
        "per_device_train_batch_size": 16, "learning_rate": 3e-3, "warmup_ratio": 0.1, "eval_strategy": "epoch",
        "save_strategy": "epoch", "save_total_limit": 1, "logging_strategy": "epoch", "seed": 0,
    })
    model, tokenizer, train_set, eval_set = build(opts.text_file or default_corpus(), opts.block_size, opts.model_name_or_path, args.seed)
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    metrics = trainer.evaluate()
    metrics["eval_perplexity"] = math.exp(metrics["eval_loss"])
    if trainer.is_world_process_zero():
        print(f"perplexity {math.exp(before):.1f} before training, {metrics['eval_perplexity']:.1f} after "
              f"({len(train_set)} training blocks of {opts.block_size} tokens)")
    trainer.save_model()
    return {**metrics, "eval_perplexity_before": math.exp(before)}


if __name__ == "__main__":
    main()
