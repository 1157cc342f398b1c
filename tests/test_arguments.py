"""TrainingArguments: every validation rule's message, aliases, fractions, JSON/YAML/CLI round trips."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from trainer import TrainingArguments
from trainer.arguments import resolve_steps
from trainer.cli import parse_training_args

BAD = [
    ({"fp16": True, "bf16": True}, "fp16=True and bf16=True were both set: choose one"),
    ({"fp16_full_eval": True, "bf16_full_eval": True}, "fp16_full_eval=True and bf16_full_eval=True were both set"),
    ({"load_best_model_at_end": True, "eval_strategy": "steps", "save_strategy": "epoch"},
     "requires save_strategy to match eval_strategy: got save_strategy='epoch' and eval_strategy='steps'"),
    ({"load_best_model_at_end": True, "eval_strategy": "steps", "eval_steps": 30, "save_steps": 50},
     "requires save_steps to be a multiple of eval_steps (so every saved checkpoint was evaluated): got save_steps=50 "
     "and eval_steps=30"),
    ({"load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "no"},
     "load_best_model_at_end=True needs checkpoints, but save_strategy='no': set save_strategy to 'epoch'"),
    ({"load_best_model_at_end": True}, "compare evaluation metrics, but eval_strategy='no'"),
    ({"save_strategy": "best"}, "save_strategy='best' needs metric_for_best_model"),
    ({"logging_steps": -5}, "logging_steps=-5 must be > 0"),
    ({"eval_strategy": "steps", "eval_steps": 0}, "eval_steps=0 must be > 0"),
    ({"save_steps": 2.5}, "save_steps=2.5 must be a whole number of steps when > 1"),
    ({"max_steps": -3}, "max_steps=-3 must be a positive number of steps, or -1"),
    ({"num_train_epochs": 0}, "num_train_epochs=0 must be > 0 (or set max_steps > 0)"),
    ({"optim": "adamw_magic"}, "optim='adamw_magic' is not a known optimizer; choose from: adamw_torch, "
                               "adamw_torch_fused, adafactor, sgd, adagrad, rmsprop"),
    ({"lr_scheduler_type": "triangle"}, "lr_scheduler_type='triangle' is not a known schedule; choose from: linear, "
                                        "cosine,"),
    ({"eval_strategy": "sometimes"}, "eval_strategy='sometimes' is not valid; choose from ['no', 'steps', 'epoch']"),
    ({"save_strategy": "always"}, "save_strategy='always' is not valid; choose from ['no', 'steps', 'epoch', 'best']"),
    ({"logging_strategy": "x"}, "logging_strategy='x' is not valid"),
    ({"evaluation_strategy": "epoch", "eval_strategy": "steps"},
     "evaluation_strategy='epoch' and eval_strategy='steps' disagree"),
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size=0 must be a whole number >= 1"),
    ({"per_device_eval_batch_size": 2.5}, "per_device_eval_batch_size=2.5 must be an integer, not float"),
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps=0 must be a whole number >= 1"),
    ({"eval_accumulation_steps": 0}, "eval_accumulation_steps=0 must be a whole number >= 1"),
    ({"learning_rate": -1e-3}, "learning_rate=-0.001 must be >= 0"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1 must be >= 0"),
    ({"warmup_steps": -1}, "warmup_steps=-1 must be >= 0"),
    ({"eval_delay": -1}, "eval_delay=-1 must be >= 0"),
    ({"dataloader_num_workers": -2}, "dataloader_num_workers=-2 must be >= 0"),
    ({"max_grad_norm": -1.0}, "max_grad_norm=-1.0 must be >= 0 (0 or None disables clipping)"),
    ({"warmup_ratio": 1.5}, "warmup_ratio=1.5 must be in [0, 1]"),
    ({"label_smoothing_factor": 1.0}, "label_smoothing_factor=1.0 must be in [0, 1)"),
    ({"adam_beta1": 1.0}, "adam_beta1=1.0 must be in [0, 1)"),
    ({"adam_beta2": -0.1}, "adam_beta2=-0.1 must be in [0, 1)"),
    ({"adam_epsilon": 0}, "adam_epsilon=0 must be > 0"),
    ({"optim_args": "momentum"}, "optim_args='momentum': 'momentum' is not 'key=value'"),
    ({"lr_scheduler_kwargs": "{bad json"}, "lr_scheduler_kwargs='{bad json' is not valid JSON"),
    ({"lr_scheduler_kwargs": [1, 2]}, "lr_scheduler_kwargs=[1, 2] must be a dict"),
    ({"gradient_checkpointing_kwargs": 3}, "gradient_checkpointing_kwargs=3 must be a dict"),
    ({"log_level": "loud"}, "log_level='loud' is not valid; choose from ['debug', 'info', 'warning', 'error', "
                            "'critical', 'passive']"),
    ({"save_total_limit": 0}, "save_total_limit=0 must be >= 1, or None to keep every checkpoint"),
    ({"dataloader_persistent_workers": True}, "dataloader_persistent_workers=True needs worker processes: set "
                                              "dataloader_num_workers > 0"),
    ({"torch_compile_mode": "fastest"}, "torch_compile_mode='fastest' is not valid"),
    ({"report_to": "comet"}, "report_to='comet': unknown backend(s) ['comet']; choose from: none, all, tensorboard, wandb, mlflow"),
    ({"ddp_backend": "carrier-pigeon"}, "ddp_backend='carrier-pigeon' is not valid; choose from ['gloo', 'nccl'"),
    ({"ddp_backend": "nccl"}, "ddp_backend='nccl' needs CUDA GPUs; on the CPU use ddp_backend='gloo'"),
    ({"ddp_timeout": 0}, "ddp_timeout=0 must be > 0 seconds"),
    ({"ddp_bucket_cap_mb": 0}, "ddp_bucket_cap_mb=0 must be > 0"),
    ({"tf32": True}, "tf32=True needs an Ampere or newer CUDA GPU; set tf32=None (or False) on this machine"),
]


@pytest.mark.parametrize("kwargs, message", BAD, ids=[",".join(k) for k, _ in BAD])
def test_bad_arguments_are_refused_with_the_fix(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingArguments(output_dir=str(tmp_path), **kwargs)


def test_validation_runs_again_at_trainer_construction(tmp_path):
    from tests.fixtures import RegressionModel
    from trainer import Trainer

    args = TrainingArguments(output_dir=str(tmp_path))
    args.fp16 = args.bf16 = True
    with pytest.raises(ValueError, match="fp16=True and bf16=True were both set"):
        Trainer(RegressionModel(), args)


def test_device_properties(tmp_path):
    import torch

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    assert args.device == torch.device("cpu") and args.n_gpu == 0
    assert args.world_size == 1 and args.process_index == 0 and args.local_process_index == 0


def test_every_field_has_help():
    for f in dataclasses.fields(TrainingArguments):
        assert f.metadata.get("help"), f.name


def test_defaults_and_derived_values(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy="steps", logging_steps=7,
                             load_best_model_at_end=True, save_steps=14, torch_compile_mode="default")
    assert args.do_eval and args.eval_steps == 7
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False
    assert args.torch_compile and args.torch_compile_backend == "inductor"
    assert args.logging_dir.startswith(str(tmp_path)) and args.run_name == str(tmp_path)
    assert TrainingArguments(output_dir="x", metric_for_best_model="accuracy").greater_is_better is True
    assert args.eval_strategy == "steps" and str(args.eval_strategy) == "steps"


def test_evaluation_strategy_alias(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), evaluation_strategy="epoch")
    assert args.eval_strategy == "epoch" and args.evaluation_strategy is None
    assert "evaluation_strategy" not in args.to_dict()


def test_fractional_steps_resolve_against_total():
    assert resolve_steps(0.1, 95) == 10
    assert resolve_steps(0.5, 3) == 2
    assert resolve_steps(0.001, 10) == 1
    assert resolve_steps(25, 1000) == 25
    TrainingArguments(output_dir="x", load_best_model_at_end=True, eval_strategy="steps", eval_steps=0.1,
                      save_steps=0.2)


def test_json_round_trip(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy="epoch", save_strategy="epoch", learning_rate=3e-4,
                             label_names=["labels"], lr_scheduler_kwargs={"num_cycles": 2}, report_to=["none"])
    text = args.to_json_string()
    data = json.loads(text)
    assert data["eval_strategy"] == "epoch" and data["lr_scheduler_kwargs"] == {"num_cycles": 2}
    assert TrainingArguments.from_json(text) == args
    path = tmp_path / "args.json"
    path.write_text(text)
    assert TrainingArguments.from_file(str(path)) == args


def test_yaml_round_trip(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=10, optim="sgd", optim_args="momentum=0.9")
    path = tmp_path / "args.yaml"
    path.write_text(args.to_yaml())
    assert TrainingArguments.from_yaml(str(path)) == args
    assert TrainingArguments.from_file(str(path)) == args


def test_unknown_field_in_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("output_dir: x\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match=re.escape("unknown TrainingArguments field(s): ['learning_rat']")):
        TrainingArguments.from_yaml(str(path))


def test_cli_parsing_priority(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.5\nnum_train_epochs: 4\n")
    args = parse_training_args(
        ["--config", str(config), "--num_train_epochs", "2", "--bf16", "--report_to", "none", "--label_names", "a",
         "b", "--fp16", "false", "--max_grad_norm", "0.5"],
        defaults={"output_dir": str(tmp_path), "learning_rate": 0.1, "seed": 3},
    )
    assert (args.learning_rate, args.num_train_epochs, args.seed) == (0.5, 2.0, 3)
    assert args.bf16 is True and args.fp16 is False and args.label_names == ["a", "b"] and args.max_grad_norm == 0.5


def test_trainforge_command(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "trainer.cli", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "trainforge train SCRIPT" in help_text
    out = subprocess.run([sys.executable, "-m", "trainer.cli", "args", "--output_dir", str(tmp_path), "--optim", "sgd"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["optim"] == "sgd"
    bad = subprocess.run([sys.executable, "-m", "trainer.cli", "args", "--optim", "nope"], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "invalid choice: 'nope'" in bad.stderr
    script = tmp_path / "s.py"
    script.write_text("import sys; print('ran', sys.argv[1:])\n")
    ran = subprocess.run([sys.executable, "-m", "trainer.cli", "train", str(script), "--x", "1"], capture_output=True,
                         text=True, check=True).stdout
    assert ran.strip() == "ran ['--x', '1']"
