"""Training throughput: the Trainer, a hand-written PyTorch loop and (when installed) the HF Trainer.

Each case trains the same model on the same data with AdamW, a linear schedule and gradient
clipping at 1.0, on the CPU with one torch thread. The hand-written loop is what a careful user
writes: forward, backward (loss / accumulation), clip, step, schedule, zero_grad, the loss kept as
a tensor and synced only at each log. Clocks start after the model exists and stop at the last
step, so each trainer's setup inside ``train()`` counts against it. The loops run in rounds, one
run each in alternating order, and the ratio reported is the median over rounds of the ratio
within a round: on a shared virtual machine the same loop's speed drifts by +-30% from one run to
the next, far more than the differences measured, and runs made back to back see the same
machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time

import torch
from torch import nn

from trainer.optim import get_scheduler

CLOCK = time.perf_counter


# -- models and data ------------------------------------------------------------------------
class MLP(nn.Module):
    """Overhead-bound: 32 -> 64 -> 1."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.net(x).squeeze(-1), labels)}


class Encoder(nn.Module):
    """Compute-bound: a 2-layer transformer encoder, d=128, 4 heads, sequences of 64, mean-pooled classifier."""

    def __init__(self, vocab: int = 1000, d: int = 128, classes: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids, labels):
        hidden = self.encoder(self.embed(input_ids)).mean(1)
        return {"loss": nn.functional.cross_entropy(self.head(hidden), labels)}


class Samples(torch.utils.data.Dataset):
    def __init__(self, columns: dict):
        self.columns = columns

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


def mlp_data(n: int = 6400) -> Samples:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g)
    return Samples({"x": x, "labels": x.sum(-1)})


def encoder_data(n: int = 2048) -> Samples:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 1000, (n, 64), generator=g)
    return Samples({"input_ids": ids, "labels": ids[:, 0] % 4})


@dataclasses.dataclass
class Case:
    name: str
    model: type
    data: callable
    steps: int
    batch: int = 32
    accumulation: int = 1
    bf16: bool = False
    workers: int = 0
    log_every: int = 500
    target: float | None = None


def cases(quick: bool) -> list[Case]:
    s = (lambda full, short: short if quick else full)  # noqa: E731
    return [
        Case("mlp, batch 32", MLP, mlp_data, s(1000, 40), log_every=s(250, 20), target=0.97),
        Case("encoder 2x128, seq 64", Encoder, encoder_data, s(30, 4), batch=16, log_every=s(10, 2), target=0.99),
        Case("encoder, accumulation 4", Encoder, encoder_data, s(10, 2), batch=16, accumulation=4,
             log_every=s(5, 1)),
        Case("encoder, bf16 autocast", Encoder, encoder_data, s(30, 4), batch=16, bf16=True, log_every=s(10, 2)),
        Case("encoder, 2 dataloader workers", Encoder, encoder_data, s(30, 4), batch=16, workers=2,
             log_every=s(10, 2)),
        Case("encoder, logging every step", Encoder, encoder_data, s(30, 4), batch=16, log_every=1),
    ]


# -- the three loops ---------------------------------------------------------------------------
def raw_loop(case: Case, dataset) -> float:
    """Steps per second of the hand-written loop."""
    torch.manual_seed(0)
    model = case.model()
    start = CLOCK()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)  # the Trainer's default
    sched = get_scheduler("linear", opt, 0, case.steps)
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=case.batch, shuffle=True, generator=g,
                                         num_workers=case.workers)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if case.bf16 else contextlib.nullcontext
    model.train()
    done, micro, logged = 0, 0, []
    running = torch.zeros(())
    while done < case.steps:
        for batch in loader:
            with autocast():
                loss = model(**batch)["loss"] / case.accumulation
            loss.backward()
            running += loss.detach()
            micro += 1
            if micro % case.accumulation:
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done % case.log_every == 0:
                logged.append(running.item() / case.log_every)
                running.zero_()
            if done == case.steps:
                break
    return case.steps / (CLOCK() - start)


def _common(case: Case, out: str) -> dict:
    return dict(output_dir=out, max_steps=case.steps, per_device_train_batch_size=case.batch, learning_rate=1e-3,
                max_grad_norm=1.0, gradient_accumulation_steps=case.accumulation, bf16=case.bf16,
                dataloader_num_workers=case.workers, logging_steps=case.log_every, save_strategy="no",
                disable_tqdm=True, report_to="none", lr_scheduler_type="linear", seed=0, use_cpu=True)


def trainer_loop(case: Case, dataset) -> float:
    from trainer import PrinterCallback, Trainer, TrainingArguments

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(case.model(), TrainingArguments(**_common(case, out)), train_dataset=dataset)
        trainer.remove_callback(PrinterCallback)  # the loops compared print nothing
        start = CLOCK()
        trainer.train()
        return case.steps / (CLOCK() - start)


def hf_loop(case: Case, dataset) -> float:
    import transformers

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        values = _common(case, out)
        values["report_to"] = []
        trainer = transformers.Trainer(model=case.model(), args=transformers.TrainingArguments(**values),
                                       train_dataset=dataset)
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        start = CLOCK()
        trainer.train()
        return case.steps / (CLOCK() - start)


def hf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def measure(case: Case, repeats: int, with_hf: bool) -> dict[str, list[float]]:
    """Steps/s of each loop, ``repeats`` rounds, each round running every loop once in an alternating order.

    One untimed warm-up run of each first. Compare round by round (:func:`ratios`): on a shared
    machine the speed drifts by tens of percent over seconds, and two runs made back to back
    see the same machine.
    """
    dataset = case.data()
    loops = {"raw": raw_loop, "trainforge": trainer_loop}
    if with_hf:
        loops["hf"] = hf_loop
    warm = dataclasses.replace(case, steps=max(2, case.steps // 10), log_every=1)
    for loop in loops.values():
        loop(warm, dataset)
    runs = {name: [] for name in loops}
    for i in range(repeats):
        order = list(loops) if i % 2 == 0 else list(reversed(loops))
        for name in order:
            runs[name].append(loops[name](case, dataset))
    return runs


def ratios(runs: dict[str, list[float]], name: str) -> list[float]:
    """Steps/s of ``name`` over the raw loop's, round by round."""
    return [ours / raw for ours, raw in zip(runs[name], runs["raw"])]
