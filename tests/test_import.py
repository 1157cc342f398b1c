"""`import trainer` stays light: no accelerate, deepspeed, datasets, transformers or logging backends."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("accelerate", "deepspeed", "datasets", "transformers", "tensorboard", "wandb", "fairscale", "optuna",
         "torchdata", "huggingface_hub", "psutil", "yaml")  # tqdm is imported by torch itself


def test_import_trainer_loads_no_heavy_module():
    code = (
        "import sys, json; import trainer, callbacks, integrations; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_public_names():
    import trainer

    for name in ("Trainer", "TrainingArguments", "TrainerCallback", "TrainerState", "TrainerControl",
                 "EarlyStoppingCallback", "EvalPrediction"):
        assert hasattr(trainer, name), name


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"{code}\nimport sys, json; print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_transformers_run_that_saves_leaves_deepspeed_unimported():
    # transformers' save_pretrained unwraps through accelerate, which imported DeepSpeed when it is installed
    code = """
import tempfile, torch
from transformers import GPT2Config, GPT2LMHeadModel
from trainer import Trainer, TrainingArguments
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
data = [{"input_ids": torch.randint(0, 50, (8,)), "labels": torch.randint(0, 50, (8,))} for _ in range(8)]
out = tempfile.mkdtemp()
args = TrainingArguments(out, max_steps=2, save_steps=1, report_to="none", disable_tqdm=True,
                         per_device_train_batch_size=4)
trainer = Trainer(model, args, train_dataset=data)
trainer.train()
trainer.save_model()
import os
assert sorted(os.listdir(out))[:2] == ["checkpoint-1", "checkpoint-2"], os.listdir(out)
"""
    assert _loaded_after(code, ("deepspeed",)) == []


def test_trainforge_env_imports_neither_deepspeed_nor_ray_unless_asked():
    code = "from trainer.env_report import environment_report; rows = dict(environment_report())"
    assert _loaded_after(code, ("deepspeed", "ray")) == []
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        code = "from trainer.env_report import environment_report; environment_report(deepspeed_ops=True)"
        assert _loaded_after(code, ("deepspeed",)) == ["deepspeed"]
