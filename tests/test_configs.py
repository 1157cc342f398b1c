"""Every file in configs/ is loaded by the code that will read it."""

from __future__ import annotations

import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.listdir(os.path.join(ROOT, "configs")))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # paths inside presets are relative to the repository root
    path = os.path.join("configs", name)
    if name.startswith("ds_"):
        from integrations.deepspeed import load_config, zero_stage

        config = load_config(path)
        assert zero_stage(config) in (2, 3) and config["train_micro_batch_size_per_gpu"] == "auto"
    elif name == "fsdp.json":
        from integrations.fsdp import load_fsdp_config

        assert load_fsdp_config(path)
    elif name.startswith("accelerate_"):
        from accelerate.commands.config.config_args import load_config_from_file

        config = load_config_from_file(path)
        assert config.num_processes >= 2
    elif name.endswith(".yaml"):
        from trainer import TrainingArguments

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        if "task" in data:  # a `trainforge train CONFIG` file: its builder resolves too
            from trainer.task_run import load_builder

            assert callable(load_builder(data.pop("task")))
            data.pop("task_args", None)
        args = TrainingArguments.from_dict(data)
        assert TrainingArguments.from_dict({k: v for k, v in args.to_dict().items()
                                            if k != "logging_dir"}).to_dict().keys() == args.to_dict().keys()
    else:
        pytest.fail(f"configs/{name}: no loader knows this kind of file; add one here")
