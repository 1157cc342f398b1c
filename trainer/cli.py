"""The ``trainforge`` command and TrainingArguments parsing from the command line.

Every TrainingArguments field is a ``--name value`` flag whose help is the field's help text.
Values come, lowest priority first, from: a script's defaults, ``--config FILE`` (YAML or
JSON), then the flags given.

    trainforge args [--config FILE] [--name value ...]   print the resolved arguments as JSON
    trainforge train SCRIPT [script arguments ...]        run a training script (like python SCRIPT)
    trainforge env                                        versions of the packages a run uses
    trainforge checkpoints DIR                            a run's checkpoints: step, metric, completeness
    trainforge plot DIR [--out PNG]                       a run's curves drawn from trainer_state.json
"""

from __future__ import annotations

import argparse
import dataclasses
import runpy
import sys
import typing
from typing import Any

from .arguments import TrainingArguments


def _str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _bool_or_str(value: str | bool) -> bool | str:
    try:
        return _str2bool(value)
    except argparse.ArgumentTypeError:
        return value


def _flag_options(hint: Any) -> dict:
    """argparse options for a field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if bool in args:
        if str in args:  # True/False or a mode name, e.g. include_num_input_tokens_seen
            return {"type": _bool_or_str, "nargs": "?", "const": True}
        return {"type": _str2bool, "nargs": "?", "const": True, "metavar": "BOOL"}
    if any(typing.get_origin(a) is list for a in args):
        return {"nargs": "+"}
    if int in args and float not in args:
        return {"type": int}
    if float in args:
        return {"type": float}
    return {"type": str}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--name`` flag per TrainingArguments field; unset flags do not appear in the result."""
    hints = typing.get_type_hints(TrainingArguments)
    group = parser.add_argument_group("TrainingArguments")
    group.add_argument("--config", default=argparse.SUPPRESS, help="YAML or JSON file of TrainingArguments values.")
    for f in dataclasses.fields(TrainingArguments):
        options = _flag_options(hints[f.name])
        choices = f.metadata.get("choices")
        if choices and options.get("type") is str:
            options["choices"] = choices
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(
            f"--{f.name}", default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {default})",
            **options,
        )


def parse_training_args(argv: list[str] | None = None, defaults: dict | None = None,
                        parser: argparse.ArgumentParser | None = None) -> TrainingArguments:
    """TrainingArguments from ``defaults``, then ``--config``, then the flags in ``argv``."""
    parser = parser or argparse.ArgumentParser(description="Training arguments")
    add_training_arguments(parser)
    given = vars(parser.parse_args(argv))
    values = dict(defaults or {})
    config = given.pop("config", None)
    if config:
        import json

        if config.endswith((".yaml", ".yml")):
            import yaml

            with open(config, encoding="utf-8") as f:
                values.update(yaml.safe_load(f) or {})
        else:
            with open(config, encoding="utf-8") as f:
                values.update(json.load(f))
    values.update(given)
    return TrainingArguments.from_dict(values)


def _env() -> None:
    import importlib.metadata
    import platform

    print(f"python      {platform.python_version()} ({platform.platform()})")
    for name in ("trainforge", "torch", "accelerate", "transformers", "datasets", "torchdata", "safetensors",
                 "deepspeed", "fairscale", "tensorboard", "wandb", "optuna", "huggingface_hub"):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:<12}{version}")
    import torch

    print(f"cuda        {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="trainforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    args_cmd = sub.add_parser("args", help="print the resolved TrainingArguments as JSON")
    add_training_arguments(args_cmd)
    train_cmd = sub.add_parser("train", help="run a training script")
    train_cmd.add_argument("script", help="path of a Python training script")
    train_cmd.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    sub.add_parser("env", help="print the versions of the packages a run uses")
    checkpoints_cmd = sub.add_parser("checkpoints", help="list a run's checkpoints: step, metric, completeness")
    checkpoints_cmd.add_argument("output_dir", help="the run's output_dir")
    plot_cmd = sub.add_parser("plot", help="draw a run's curves (loss, learning rate, grad norm, eval metrics) to PNG")
    plot_cmd.add_argument("output_dir", help="the run's output_dir")
    plot_cmd.add_argument("--out", default=None, help="PNG path (default: OUTPUT_DIR/training_curves.png)")

    if argv[:1] == ["args"]:
        print(parse_training_args(argv[1:], parser=argparse.ArgumentParser(prog="trainforge args")).to_json_string(),
              end="")
        return 0
    opts = parser.parse_args(argv)
    if opts.command == "env":
        _env()
        return 0
    if opts.command in ("checkpoints", "plot"):
        from .run_files import describe_checkpoints, format_checkpoints, plot_run

        try:
            if opts.command == "checkpoints":
                print(format_checkpoints(describe_checkpoints(opts.output_dir)))
            else:
                print(plot_run(opts.output_dir, opts.out))
        except (FileNotFoundError, ValueError) as err:
            print(f"trainforge {opts.command}: {err}", file=sys.stderr)
            return 2
        return 0
    sys.argv = [opts.script, *opts.script_args]
    runpy.run_path(opts.script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
