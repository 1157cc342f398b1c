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
