"""A causal-LM script written the way transformers' ``run_*.py`` examples are, runnable with their classes or ours.

``HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))`` reads the flags (or one
``.json`` / ``.yaml`` file), the log level comes from ``get_process_log_level()``, the data is built under
``main_process_first()``, and the run trains (``--resume_from_checkpoint``), evaluates and writes its
metrics with ``log_metrics`` / ``save_metrics`` / ``save_state``. The only line that differs between
transformers and trainforge is the import, chosen here by ``--backend`` (read from the command line before
the parser; a run from a file uses trainforge's):

    python examples/run_clm_hf_style.py --output_dir outputs/clm --do_train --do_eval [--backend transformers]
    python examples/run_clm_hf_style.py args.json            # every argument from a file

Offline default: this repository's README and docs as the corpus, a word-level tokenizer trained on it and
a tiny GPT-2 from a config; ``--model_name_or_path gpt2`` loads a real one from the Hub (online).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = "transformers" if "--backend=transformers" in sys.argv or (
    "--backend" in sys.argv and sys.argv[sys.argv.index("--backend") + 1:][:1] == ["transformers"]) else "trainforge"
if BACKEND == "transformers":
    from transformers import Trainer, TrainingArguments, set_seed
else:
    sys.path.insert(0, ROOT)
    from trainer import Trainer, TrainingArguments, set_seed

import transformers  # noqa: E402
from transformers import HfArgumentParser, default_data_collator  # noqa: E402

from trainer.demo import TokenBlocks  # noqa: E402  (the block dataset; this project's, whichever Trainer runs)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "A Hub model (online); default: a tiny "
                                                                           "GPT-2 built from a config."})
    n_layer: int = field(default=2, metadata={"help": "Layers of the tiny GPT-2."})
    n_embd: int = field(default=64, metadata={"help": "Width of the tiny GPT-2."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout of the tiny GPT-2 (embeddings, attention, "
                                                         "residuals)."})
    backend: str = field(default="trainforge", metadata={"help": "Whose Trainer runs the script.",
                                                         "choices": ["trainforge", "transformers"]})


@dataclass
class DataTrainingArguments:
    text_files: list[str] | None = field(default=None, metadata={"help": "Text files; default: the README and "
                                                                         "docs of this repository."})
    block_size: int = field(default=32, metadata={"help": "Tokens per training block."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training blocks."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N evaluation blocks."})


def corpus(files: list[str] | None) -> list[str]:
    if not files:
        docs = os.path.join(ROOT, "docs")
        files = [os.path.join(ROOT, "README.md")] + sorted(
            os.path.join(docs, name) for name in os.listdir(docs) if name.endswith(".md"))
    lines = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines += [line for line in f.read().splitlines() if line.strip()]
    return lines


def parse():
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    argv = sys.argv[1:]
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(yaml_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def main() -> dict:
    model_args, data_args, training_args = parse()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", handlers=[
        logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(f"Process rank: {training_args.process_index}, device: {training_args.device}, "
                   f"n_gpu: {training_args.n_gpu}, distributed training: "
                   f"{training_args.parallel_mode.value == 'distributed'} ({BACKEND})")
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="tokenizing"):
        lines = corpus(data_args.text_files)
        if model_args.model_name_or_path:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_args.model_name_or_path)
            model = transformers.AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path)
        else:
            from trainer.demo import word_tokenizer

            tokenizer = word_tokenizer(lines)
            config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=data_args.block_size,
                                             n_embd=model_args.n_embd, n_layer=model_args.n_layer, n_head=2,
                                             resid_pdrop=model_args.dropout, embd_pdrop=model_args.dropout,
                                             attn_pdrop=model_args.dropout,
                                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
            model = transformers.GPT2LMHeadModel(config)
        ids = [i for line in lines for i in tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]]
        blocks = TokenBlocks(ids, data_args.block_size)
        n_eval = max(1, len(blocks) // 10)
        eval_set = torch.utils.data.Subset(blocks, range(min(n_eval, data_args.max_eval_samples or n_eval)))
        train_range = range(n_eval, len(blocks))
        if data_args.max_train_samples:
            train_range = train_range[: data_args.max_train_samples]
        train_set = torch.utils.data.Subset(blocks, train_range)

    trainer = Trainer(model=model, args=training_args, train_dataset=train_set if training_args.do_train else None,
                      eval_dataset=eval_set if training_args.do_eval else None, processing_class=tokenizer,
                      data_collator=default_data_collator)
    results = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        metrics = train_result.metrics
        metrics["train_samples"] = len(train_set)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)
    if training_args.do_eval:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(eval_set)
        metrics["perplexity"] = math.exp(metrics["eval_loss"]) if metrics["eval_loss"] < 50 else float("inf")
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    return results


if __name__ == "__main__":
    main()
