"""Flags and config files for TrainingArguments plus a script's own dataclasses."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest

from trainer import TrainingArguments
from trainer.argparsing import DataclassArgumentParser


class Pooling(enum.Enum):
    MEAN = "mean"
    CLS = "cls"


@dataclass
class ModelArguments:
    model_name: str = field(default="tiny-bert", metadata={"help": "Hub id or local path of the model."})
    hidden_size: int = field(default=32, metadata={"help": "Width of the tiny model."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use the Rust tokenizer."})
    freeze: list[str] = field(default_factory=list, metadata={"help": "Parameter name prefixes to freeze."})
    head: Literal["linear", "mlp"] = field(default="linear", metadata={"help": "Classifier head."})
    pooling: Pooling = field(default=Pooling.MEAN, metadata={"help": "How tokens are pooled."})


def parser() -> DataclassArgumentParser:
    return DataclassArgumentParser([ModelArguments, TrainingArguments], prog="script")


def test_config_file_then_flags_override_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\nlearning_rate: 0.5\nnum_train_epochs: 4\n"
                      "hidden_size: 64\nfreeze: [embeddings]\n")
    model, args = parser().parse(["--config", str(config), "--num_train_epochs", "2", "--no_use_fast_tokenizer",
                                  "--freeze", "embeddings", "encoder.layer.0", "--head", "mlp", "--pooling", "cls",
                                  "--bf16"], defaults={"seed": 3, "learning_rate": 0.1})
    assert (args.learning_rate, args.num_train_epochs, args.seed, args.bf16) == (0.5, 2.0, 3, True)
    assert model.hidden_size == 64 and model.use_fast_tokenizer is False
    assert model.freeze == ["embeddings", "encoder.layer.0"] and model.head == "mlp" and model.pooling is Pooling.CLS
    lone_json = tmp_path / "run.json"  # a lone config argument, JSON this time
    lone_json.write_text(json.dumps({"output_dir": str(tmp_path / "o2"), "model_name": "local/path"}))
    model, args = parser().parse([str(lone_json), "--hidden_size", "8"])
    assert model.model_name == "local/path" and model.hidden_size == 8 and args.output_dir == str(tmp_path / "o2")


def test_unknown_config_key_names_the_closest_valid_one(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.1\nhiden_size: 3\n")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) in .*bad.yaml: 'learning_rat' \(did you mean "
                                         r"'learning_rate'\?\), 'hiden_size' \(did you mean 'hidden_size'\?\); valid "
                                         "names are the fields of ModelArguments, TrainingArguments"):
        parser().parse(["--config", str(config)])


def test_bad_flag_values_are_refused(tmp_path, capsys):
    for argv, shown in ((["--head", "rnn"], "argument --head: invalid choice: 'rnn' (choose from 'linear', 'mlp')"),
                        (["--hidden_size", "wide"], "argument --hidden_size: invalid int value: 'wide'"),
                        (["--use_fast_tokenizer", "maybe"], "expected true or false, got 'maybe'")):
        with pytest.raises(SystemExit):
            parser().parse(argv)
        assert shown in capsys.readouterr().err
    config = tmp_path / "list.yaml"
    config.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping of argument names to values, got list"):
        parser().parse([str(config)])
    with pytest.raises(FileNotFoundError, match="--config 'missing.yaml': no such file"):
        parser().parse(["--config", "missing.yaml"])


def test_bad_config_values_name_the_key_and_what_it_takes(tmp_path):
    cases = {
        "num_train_epochs: three\n": "num_train_epochs: 'three' in .*c.yaml is not a number",
        "max_steps: 2.5\n": "max_steps: 2.5 in .*c.yaml is not an integer",
        "bf16: maybe\n": "bf16: 'maybe' in .*c.yaml is not true or false",
        "head: rnn\n": r"head: 'rnn' in .*c.yaml is not one of \['linear', 'mlp'\]",
        "eval_strategy: sometimes\n": r"eval_strategy: 'sometimes' in .*c.yaml is not one of \['no', 'steps', 'epoch'\]",
        "{: broken\n": "--config '.*c.yaml' is not valid YAML: while parsing a flow node .* line 1, column 2",
    }
    for text, message in cases.items():
        config = tmp_path / "c.yaml"
        config.write_text(text)
        with pytest.raises(ValueError, match=message):
            parser().parse([str(config)])
    broken = tmp_path / "c.json"
    broken.write_text('{"learning_rate": 0.1,}')
    with pytest.raises(ValueError, match="--config '.*c.json' is not valid JSON: Expecting property name"):
        parser().parse([str(broken)])
    # YAML reads 1e-4 as a string and "false" quoted stays one: both are converted as flags would be
    config = tmp_path / "ok.yaml"
    config.write_text(f"output_dir: {tmp_path}\nlearning_rate: 1e-4\nmax_steps: 2.0\nbf16: 'false'\npooling: cls\n")
    model, args = parser().parse([str(config)])
    assert (args.learning_rate, args.max_steps, args.bf16, model.pooling) == (1e-4, 2, False, Pooling.CLS)
    assert isinstance(args.max_steps, int)


def test_duplicate_field_names_are_refused():
    @dataclass
    class Clash:
        learning_rate: float = 1.0

    with pytest.raises(ValueError, match="Clash.learning_rate and TrainingArguments.learning_rate would both be "
                                         "--learning_rate: rename one of the fields"):
        DataclassArgumentParser([TrainingArguments, Clash])


def test_help_lists_every_field_with_its_help():
    import dataclasses

    text = subprocess.run([sys.executable, "-m", "trainer.cli", "args", "--help"], capture_output=True, text=True,
                          check=True).stdout
    for f in dataclasses.fields(TrainingArguments):
        if f.init and f.name != "evaluation_strategy":
            assert f"--{f.name}" in text, f.name
    assert "Peak learning rate of the optimizer." in text
    help_text = parser().format_help()
    assert "--no_use_fast_tokenizer" in help_text and "Parameter name prefixes to freeze." in help_text


def test_trainforge_train_a_config_writes_checkpoints_metrics_and_tensorboard(tmp_path):
    import glob
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", "train", "configs/quickstart.yaml", "--num_train_epochs",
                           "1", "--output_dir", str(out), "--disable_tqdm", "true"],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoint-45" / "model.safetensors").exists()  # 1437 samples / 32 = 45 steps
    results = json.loads((out / "all_results.json").read_text())
    assert results["epoch"] == 1.0 and 0.0 < results["eval_accuracy"] <= 1.0 and "train_loss" in results
    assert glob.glob(str(out / "runs" / "*" / "events.out.tfevents.*"))
    assert "***** eval metrics *****" in proc.stdout


def test_trainforge_train_config_errors(tmp_path):
    from trainer.task_run import run_task_config

    no_task = tmp_path / "no_task.yaml"
    no_task.write_text("output_dir: x\n")
    with pytest.raises(ValueError, match="no 'task: module:function' key naming the builder"):
        run_task_config(str(no_task), [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: examples.quickstart\noutput_dir: x\n")
    with pytest.raises(ValueError, match="task='examples.quickstart' must be 'module:function'"):
        run_task_config(str(bad), [])
    missing = tmp_path / "missing.yaml"
    missing.write_text("task: examples.quickstart:nothing\noutput_dir: x\n")
    with pytest.raises(ValueError, match="examples.quickstart has no function 'nothing'"):
        run_task_config(str(missing), [])


BAD_CONFIGS = {
    "unknown key": ("learning_rat: 0.1\n", "unknown argument(s) in {path}: 'learning_rat' (did you mean "
                    "'learning_rate'?)"),
    "wrong type": ("num_train_epochs: three\n", "num_train_epochs: 'three' in {path} is not a number"),
    "bad yaml": ("{: broken\n", "--config '{path}' is not valid YAML"),
    "refused value": ("learning_rate: -1\n", "learning_rate=-1 must be >= 0 (the values of {path} and the flags)"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["args", "train", "train SCRIPT"])
def test_config_errors_are_one_line_and_exit_2_in_every_subcommand(tmp_path, case, command):
    text, message = BAD_CONFIGS[case]
    path = tmp_path / "run.yaml"
    path.write_text(("task: trainer.demo:build\n" if command == "train" else "") + text)
    script = tmp_path / "script.py"
    script.write_text("from trainer.cli import parse_training_args\nimport sys\n"
                      "from trainer.argparsing import DataclassArgumentParser\n"
                      "from trainer import TrainingArguments\n"
                      "DataclassArgumentParser([TrainingArguments], prog='script').parse()\nprint('TRAINED')\n")
    argv = ["train", str(script), str(path)] if command == "train SCRIPT" else [command, str(path)]
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "TRAINED" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert message.format(path=path) in lines[-1]
    assert len(lines) == 1, lines


def test_trainforge_args_shows_what_a_train_config_resolves_to(tmp_path, capsys):
    from trainer.cli import main

    assert main(["args", "configs/quickstart.yaml", "--learning_rate", "0.5"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["learning_rate"] == 0.5 and resolved["output_dir"] == "outputs/quickstart-config"


def test_trainforge_env_reports_versions_and_what_is_usable():
    import importlib.util

    import torch

    from trainer.env_report import environment_report, format_report

    rows = dict(environment_report())
    assert rows["torch"] == torch.__version__
    assert "gloo" in rows["distributed"]
    assert rows["cuda"].startswith("no GPU") != torch.cuda.is_available()
    if importlib.util.find_spec("tensorboard"):
        assert "tensorboard" in rows["report_to all"]
    if importlib.util.find_spec("optuna"):
        assert "optuna" in rows["search backends"]
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", "env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(format_report(environment_report()))  # after DeepSpeed's own notice
