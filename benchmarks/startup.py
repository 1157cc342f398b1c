"""Start-up: the wall time from ``python script.py`` to the end of the first optimizer step, and from
``Trainer(...)`` to it, for trainforge, transformers' Trainer and a raw PyTorch loop.

Each measurement is a fresh interpreter running this file with ``--child``: the parent notes the clock just
before it starts the process, the child prints the clock at the end of step 1 (a callback, or the raw loop's
own code) and exits there. Two cases: the quickstart (the CNN on scikit-learn's digits, with the quickstart's
arguments: evaluation and saving every epoch, best model at the end, metrics) and a tiny transformers model
(a 2-layer BERT classifier on random tokens). ``python -m benchmarks.startup [--repeats 3]`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("quickstart", "tiny_bert")
RUNNERS = ("raw", "trainforge", "transformers")


def _case(name: str):
    """(model, train dataset, compute_metrics, eval dataset, argument values) of a case."""
    import torch

    if name == "quickstart":
        from trainer.demo import DigitsCNN, compute_metrics, load_digits_splits

        train_set, eval_set = load_digits_splits(0)
        values = dict(num_train_epochs=12, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                      learning_rate=3e-3, weight_decay=0.01, warmup_steps=0.05, lr_scheduler_type="cosine",
                      eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
                      metric_for_best_model="accuracy", logging_strategy="epoch", seed=0)
        return DigitsCNN(), train_set, compute_metrics, eval_set, values
    import transformers

    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, num_labels=2)
    generator = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, 1000, (32,), generator=generator), "labels": i % 2} for i in range(256)]
    values = dict(num_train_epochs=1, per_device_train_batch_size=16, learning_rate=1e-3, save_strategy="no")
    return transformers.BertForSequenceClassification(config), data, None, data[:64], values


def _raw_first_step(model, train_set) -> None:
    import torch

    loader = torch.utils.data.DataLoader(train_set, batch_size=16, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = next(iter(loader))
    model.train()
    output = model(**batch)
    loss = output["loss"] if isinstance(output, dict) else output.loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()


def child(runner: str, case: str, output_dir: str) -> None:
    sys.path.insert(0, ROOT)
    if runner == "raw":
        import torch

        torch.set_num_threads(1)
        model, train_set, _, _, _ = _case(case)
        start = time.time()
        _raw_first_step(model, train_set)
        print(json.dumps({"first_step": time.time(), "trainer_to_step": time.time() - start}), flush=True)
        return
    if runner == "trainforge":
        from trainer import Trainer, TrainerCallback, TrainingArguments
    else:
        from transformers import Trainer, TrainerCallback, TrainingArguments
    import torch

    torch.set_num_threads(1)
    model, train_set, metrics, eval_set, values = _case(case)

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            now = time.time()
            print(json.dumps({"first_step": now, "trainer_to_step": now - start}), flush=True)
            os._exit(0)

    extra = {"use_cpu": True} if runner == "transformers" else {}
    args = TrainingArguments(output_dir=output_dir, report_to="none", disable_tqdm=True, **values, **extra)
    start = time.time()
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set, compute_metrics=metrics,
                      callbacks=[FirstStep()])
    trainer.train()


def run_once(runner: str, case: str, output_dir: str) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT, "TOKENIZERS_PARALLELISM": "false"}
    started = time.time()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", runner, "--case", case,
                           "--output_dir", output_dir], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{runner}/{case} failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    values = json.loads(line)
    return {"process_to_step": values["first_step"] - started, "trainer_to_step": values["trainer_to_step"]}


def measure(repeats: int, with_hf: bool, cases=CASES) -> dict:
    """``{case: {runner: {"process_to_step": median s, "trainer_to_step": median s}}}``; rounds alternate order."""
    import tempfile

    runners = [r for r in RUNNERS if with_hf or r != "transformers"]
    results = {case: {r: {"process_to_step": [], "trainer_to_step": []} for r in runners} for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(repeats):
            order = runners if round_index % 2 == 0 else runners[::-1]
            for case in cases:
                for runner in order:
                    got = run_once(runner, case, os.path.join(tmp, f"{case}-{runner}-{round_index}"))
                    for key, value in got.items():
                        results[case][runner][key].append(value)
    return {case: {r: {k: statistics.median(v) for k, v in values.items()} for r, values in by.items()}
            for case, by in results.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=RUNNERS)
    parser.add_argument("--case", choices=CASES, default="quickstart")
    parser.add_argument("--output_dir", default="outputs/startup")
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args(argv)
    if opts.child:
        child(opts.child, opts.case, opts.output_dir)
        return
    got = measure(opts.repeats, with_hf=True)
    for case, by in got.items():
        for key in ("process_to_step", "trainer_to_step"):
            cells = ", ".join(f"{r} {v[key]:.2f} s" for r, v in by.items())
            print(f"{case} {key}: {cells}; ours/transformers {by['trainforge'][key] / by['transformers'][key]:.2f}")


if __name__ == "__main__":
    main()
