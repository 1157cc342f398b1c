"""GPU training throughput: a ~125M-parameter GPT-2-style decoder (12 layers, 768 wide, vocabulary 50,304), bf16
autocast, sequences of 1024, batches of 16, fused AdamW, gradient clipping at 1.0: a raw PyTorch loop, trainforge
and transformers' Trainer, each without and with ``torch_compile``. Reports tokens/s (timed from step 10 to step 40,
synchronized at both ends), each trainer's ratio to the raw loop, MFU (model FLOPs per token x tokens/s / the GPU's
bf16 dense peak) and peak GPU memory.

    python -m benchmarks.gpu.throughput [--dry-run] [--out DIR]

``--dry-run`` runs the same code on the CPU with a 2-layer, 64-wide model on sequences of 64 (numbers meaningless).
Each result is appended to ``DIR/throughput.json`` as soon as it is measured, so a run cut short keeps what it had.
FLOPs per token: 6 x the parameters other than the position embeddings (the tied token embedding is the output
layer's matrix) + 12 x layers x width x sequence length (attention scores and values), as in the PaLM paper.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

SIZES = {
    "full": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50304, seq=1024, batch=16, warmup=10, steps=30),
    "dry": dict(n_layer=2, n_embd=64, n_head=2, vocab_size=256, seq=64, batch=4, warmup=2, steps=4),
}
BF16_PEAK = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12}  # dense, from the spec sheets
RUNNERS = ("raw", "trainforge", "transformers")


def build_model(size: dict):
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=size["n_layer"], n_embd=size["n_embd"], n_head=size["n_head"],
                                     vocab_size=size["vocab_size"], n_positions=size["seq"], resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config)


def token_data(size: dict, n_batches: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, size["vocab_size"], (n_batches * size["batch"], size["seq"]), generator=generator)
    return [{"input_ids": row, "labels": row} for row in ids]


def flops_per_token(model, size: dict) -> float:
    params = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    return 6 * params + 12 * size["n_layer"] * size["n_embd"] * size["seq"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_raw(model, data, size: dict, compiled: bool, device: torch.device) -> float:
    """Seconds of steps warmup..warmup+steps of a hand-written loop."""
    model.to(device).train()
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=device.type == "cuda")
    total = size["warmup"] + size["steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    loader = torch.utils.data.DataLoader(data, batch_size=size["batch"], shuffle=True, drop_last=True,
                                         pin_memory=device.type == "cuda")
    batches = iter(loader)
    start = None
    for step in range(total):
        if step == size["warmup"]:
            _sync(device)
            start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = step_model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


def run_trainer(lib: str, model, data, size: dict, compiled: bool, device: torch.device) -> float:
    if lib == "trainforge":
        from trainer import Trainer, TrainerCallback, TrainingArguments
    else:
        from transformers import Trainer, TrainerCallback, TrainingArguments
    total = size["warmup"] + size["steps"]
    clock = {}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == size["warmup"]:
                _sync(device)
                clock["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == total:
                _sync(device)
                clock["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=total, per_device_train_batch_size=size["batch"], learning_rate=1e-4,
            lr_scheduler_type="linear", bf16=True, torch_compile=compiled, max_grad_norm=1.0, save_strategy="no",
            logging_steps=total, report_to="none", disable_tqdm=True, dataloader_pin_memory=device.type == "cuda",
            optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch", use_cpu=device.type == "cpu",
            dataloader_drop_last=True,
        )
        Trainer(model=model, args=args, train_dataset=data, callbacks=[Timer()]).train()
    return clock["end"] - clock["start"]


def measure_one(runner: str, compiled: bool, size: dict, device: torch.device) -> dict:
    model = build_model(size)
    data = token_data(size, size["warmup"] + size["steps"] + 1)
    flops = flops_per_token(model, size)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if runner == "raw":
        seconds = run_raw(model, data, size, compiled, device)
    else:
        seconds = run_trainer(runner, model, data, size, compiled, device)
    tokens_per_second = size["steps"] * size["batch"] * size["seq"] / seconds
    result = {"runner": runner, "compile": compiled, "tokens_per_second": tokens_per_second,
              "seconds": seconds, "flops_per_token": flops,
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
    peak = gpu_peak(device)
    result["mfu"] = flops * tokens_per_second / peak if peak else None
    del model
    return result


def gpu_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in BF16_PEAK.items() if key in name), None)


def environment(device: torch.device) -> dict:
    import transformers

    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU with a tiny model")
    parser.add_argument("--out", default="outputs/gpu_report")
    parser.add_argument("--no-compile", action="store_true", help="leave the torch_compile runs out")
    opts = parser.parse_args(argv)
    size = SIZES["dry" if opts.dry_run else "full"]
    device = torch.device("cuda" if torch.cuda.is_available() and not opts.dry_run else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs(opts.out, exist_ok=True)
    path = os.path.join(opts.out, "throughput.json")
    report = {"environment": environment(device), "size": size, "results": []}
    for compiled in (False,) if opts.no_compile else (False, True):
        for runner in RUNNERS:
            try:
                result = measure_one(runner, compiled, size, device)
            except Exception as error:  # reported, and the other runs go on
                result = {"runner": runner, "compile": compiled, "error": f"{type(error).__name__}: {error}"[:2000]}
            report["results"].append(result)
            with open(path, "w") as f:
                json.dump(report, f, indent=2)
            print(json.dumps(result), flush=True)
    return report["results"]


if __name__ == "__main__":
    main()
