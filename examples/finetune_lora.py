"""LoRA fine-tuning of a small causal LM, offline, in a few minutes on a CPU.

1. A base model. Online, ``--model_name_or_path gpt2`` (or any causal LM) loads one from the Hub. Offline (the
   default) a small GPT-2 is first pretrained by the same Trainer on a real text corpus that ships with this
   repository: its documentation (README.md and docs/*.md), with a word-level tokenizer trained on it.
2. An instruction task: "what does --<flag> do?" answered by the start of the flag's help (12 words at most), one
   example per ``TrainingArguments`` field (the text of docs/arguments.md). The prompt's tokens are masked (-100): only the answer is
   learned. Sequences are packed without padding (``DataCollatorWithFlattening``); 10% of them are held out.
3. LoRA (r=16 on attention and MLP) fine-tuning, with the perplexity of the held-out answers and greedy answers to
   three of the training questions before and after, the adapter saved (``adapter_model.safetensors``), then merged into the base
   (``merge_and_unload``), saved, and reloaded with transformers' ``from_pretrained``: the reloaded model gives the
   adapted model's logits.

Offline, the base is a 1.2M-parameter GPT-2 pretrained for about a minute, and a LoRA adapter on it learns this
task slowly: the held-out perplexity falls several-fold, while the sampled answers stay rough. The same script with
``--model_name_or_path gpt2`` (online) fine-tunes a real pretrained model.

    python examples/finetune_lora.py [--pretrain_steps 600] [--finetune_steps 400] [--output_dir outputs/lora]
                                     [--model_name_or_path gpt2]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from trainer import Trainer, TrainingArguments, set_seed  # noqa: E402
from trainer.demo import TokenBlocks, word_tokenizer  # noqa: E402

QUESTION = "question : what does {flag} do ? answer :"


def corpus() -> list[str]:
    files = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md"))
    lines = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines += [line for line in f.read().splitlines() if line.strip()]
    return lines


def instructions() -> list[tuple[str, str]]:
    """(question, answer): each ``TrainingArguments`` field and the first sentence of its help (the text of
    docs/arguments.md)."""
    import dataclasses

    pairs = []
    for field in dataclasses.fields(TrainingArguments):
        text = field.metadata.get("help", "").replace("`", "")
        if text:
            first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")
            pairs.append((QUESTION.format(flag="--" + field.name), " ".join(first.split()[:12])))
    return pairs


def base_model(opts, tokenizer, lines: list[str]):
    """A pretrained causal LM: from the Hub, or a small GPT-2 pretrained here on ``lines``."""
    import transformers

    if opts.model_name_or_path:
        return transformers.AutoModelForCausalLM.from_pretrained(opts.model_name_or_path)
    set_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=128, n_layer=4, n_head=4,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
    model = transformers.GPT2LMHeadModel(config)
    ids = [i for line in lines for i in tokenizer(line)["input_ids"]]
    args = TrainingArguments(os.path.join(opts.output_dir, "pretrain"), max_steps=opts.pretrain_steps,
                             per_device_train_batch_size=16, learning_rate=3e-3, warmup_steps=0.05,
                             lr_scheduler_type="cosine", logging_steps=max(1, opts.pretrain_steps // 5),
                             save_strategy="no", report_to="none", disable_tqdm=True, seed=0)
    Trainer(model, args, train_dataset=TokenBlocks(ids, 64)).train()
    print(f"pretrained the base GPT-2 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) on "
          f"{len(ids)} tokens of this repository's documentation")
    return model


def encode(tokenizer, question: str, answer: str) -> dict:
    prompt = tokenizer(question, add_special_tokens=False)["input_ids"]
    reply = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = ([tokenizer.bos_token_id] + prompt + reply)[:128]
    return {"input_ids": ids, "labels": [-100] * (1 + len(prompt)) + ids[1 + len(prompt):]}


def answer(model, tokenizer, question: str, tokens: int = 16) -> str:
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(question, add_special_tokens=False)["input_ids"]])
    model.eval()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> dict:
    import peft
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/lora")
    parser.add_argument("--pretrain_steps", type=int, default=600)
    parser.add_argument("--finetune_steps", type=int, default=400)
    parser.add_argument("--model_name_or_path", default=None, help="a Hub causal LM (online); default: pretrain one")
    opts = parser.parse_args(argv)

    pairs = instructions()
    lines = corpus()
    if opts.model_name_or_path:
        tokenizer = transformers.AutoTokenizer.from_pretrained(opts.model_name_or_path)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        tokenizer.bos_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    else:
        tokenizer = word_tokenizer(lines + [q + " " + a for q, a in pairs])
    model = base_model(opts, tokenizer, lines)

    examples = [encode(tokenizer, q, a) for q, a in pairs]
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(examples), generator=generator).tolist()
    held_out = order[: max(3, len(order) // 10)]
    train_set = [examples[i] for i in order if i not in held_out]
    eval_set = [examples[i] for i in held_out]
    questions = [pairs[i] for i in order[len(held_out):len(held_out) + 3]]  # trained on: does it answer them?

    lora = peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["c_attn", "c_fc", "c_proj"],
                           fan_in_fan_out=True, task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    args = TrainingArguments(os.path.join(opts.output_dir, "finetune"), max_steps=opts.finetune_steps,
                             per_device_train_batch_size=8, learning_rate=5e-3, warmup_steps=0.05,
                             lr_scheduler_type="cosine", eval_strategy="steps",
                             eval_steps=max(1, opts.finetune_steps // 3), save_strategy="steps",
                             save_steps=max(1, opts.finetune_steps // 3), save_total_limit=1,
                             logging_steps=max(1, opts.finetune_steps // 6), report_to="none", disable_tqdm=True,
                             seed=0, overwrite_output_dir=True)
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer,
                      data_collator=transformers.DataCollatorWithFlattening())  # packed: no padding
    before = {q: answer(model, tokenizer, q) for q, _ in questions}
    perplexity_before = math.exp(trainer.evaluate()["eval_loss"])
    trainer.train()
    perplexity = math.exp(trainer.evaluate()["eval_loss"])
    print(f"LoRA: {trainable} of {total} parameters trained ({100 * trainable / total:.1f}%), {len(train_set)} "
          f"instructions packed without padding, {len(eval_set)} held out")
    print(f"eval perplexity of the answers: {perplexity_before:.1f} before fine-tuning, {perplexity:.1f} after")
    for question, truth in questions:
        print(f"\n{question}\n  before: {before[question]}\n  after:  {answer(model, tokenizer, question)}\n"
              f"  truth:  {truth}")

    adapter_dir = os.path.join(opts.output_dir, "adapter")
    trainer.save_model(adapter_dir)  # adapter_model.safetensors + adapter_config.json, and the tokenizer
    merged_dir = os.path.join(opts.output_dir, "merged")
    model.eval()
    probe = torch.tensor([eval_set[0]["input_ids"]])
    with torch.no_grad():
        adapted = model(probe).logits
    merged = model.merge_and_unload()
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    with torch.no_grad():
        gap = (reloaded(probe).logits - adapted).abs().max().item()
    print(f"\nadapter saved in {adapter_dir}; merged model saved in {merged_dir} and reloaded with "
          f"transformers from_pretrained: largest logit difference from the adapted model {gap:.1e}")
    return {"perplexity_before": perplexity_before, "perplexity": perplexity, "merged_logit_gap": gap,
            "adapter_dir": adapter_dir, "merged_dir": merged_dir}


if __name__ == "__main__":
    main()
