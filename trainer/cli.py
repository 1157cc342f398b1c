"""The ``trainforge`` command and TrainingArguments parsing from the command line.

Every TrainingArguments field is a ``--name value`` flag whose help is the field's help text
(``argparsing.py``). Values come, lowest priority first, from: a script's defaults, ``--config
FILE`` (YAML or JSON), then the flags given.

    trainforge args [--config FILE] [--name value ...]   print the resolved arguments as JSON
    trainforge train CONFIG.yaml [--name value ...]       train as the config says (task: module:function)
    trainforge train SCRIPT [script arguments ...]        run a training script (like python SCRIPT)
    trainforge env [--deepspeed-ops]                      versions of the packages a run uses
    trainforge checkpoints DIR                            a run's checkpoints (or one checkpoint-N): step, metric, completeness
    trainforge plot DIR [--out PNG] [--smooth 0.9]        a run's curves drawn from trainer_state.json
"""

from __future__ import annotations

import argparse
import runpy
import sys

from .argparsing import ConfigError, DataclassArgumentParser
from .arguments import TrainingArguments


def parse_training_args(argv: list[str] | None = None, defaults: dict | None = None,
                        prog: str | None = None) -> TrainingArguments:
    """TrainingArguments from ``defaults``, then ``--config`` (or a lone config file argument), then the
    flags in ``argv`` (see ``argparsing.py``; scripts with their own dataclasses use
    ``DataclassArgumentParser`` directly)."""
    parser = DataclassArgumentParser([TrainingArguments], prog=prog, description="Training arguments")
    return parser.parse(argv, defaults)[0]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="trainforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("args", help="print the resolved TrainingArguments as JSON (see `trainforge args --help`)")
    train_cmd = sub.add_parser("train", help="train from a config file (task + arguments) or run a training script")
    train_cmd.add_argument("script", help="a config (.yaml/.json with 'task: module:function') or a Python script")
    train_cmd.add_argument("script_args", nargs=argparse.REMAINDER,
                           help="flags overriding the config, or the script's arguments")
    env_cmd = sub.add_parser("env", help="versions of torch and every integration, and what is usable here (GPU, "
                             "distributed backends...)")
    env_cmd.add_argument("--deepspeed-ops", action="store_true",
                         help="also probe DeepSpeed's compiled ops (cpu_adam, fused_adam): imports DeepSpeed")
    checkpoints_cmd = sub.add_parser("checkpoints", help="list a run's checkpoints: step, metric, completeness")
    checkpoints_cmd.add_argument("output_dir", help="the run's output_dir, or one of its checkpoint-N folders")
    plot_cmd = sub.add_parser("plot", help="draw a run's curves (loss, learning rate, grad norm, eval metrics) to PNG")
    plot_cmd.add_argument("output_dir", help="the run's output_dir")
    plot_cmd.add_argument("--out", default=None, help="PNG path (default: OUTPUT_DIR/training_curves.png)")
    plot_cmd.add_argument("--smooth", type=float, default=0.0,
                          help="smooth the loss and grad norm curves: 0 (none) to 0.99, as TensorBoard's slider")

    command = argv[0] if argv else None
    try:
        return _run(parser, argv)
    except ConfigError as error:  # a config or a value: one line naming the key and the file, as for a bad flag
        print(f"trainforge {command}: error: {error}", file=sys.stderr)
        return 2


def _run(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    if argv[:1] == ["args"]:  # a `trainforge train` config too: its task keys are not arguments
        from .task_run import TASK_KEYS

        args = DataclassArgumentParser([TrainingArguments], prog="trainforge args",
                                       description="Training arguments").parse(argv[1:], ignore=TASK_KEYS)[0]
        print(args.to_json_string(), end="")
        return 0
    opts = parser.parse_args(argv)
    if opts.command == "env":
        from .env_report import environment_report, format_report

        print(format_report(environment_report(opts.deepspeed_ops)))
        return 0
    if opts.command in ("checkpoints", "plot"):
        from .run_files import describe_checkpoints, format_checkpoints, plot_run

        try:
            if opts.command == "checkpoints":
                print(format_checkpoints(describe_checkpoints(opts.output_dir)))
            else:
                print(plot_run(opts.output_dir, opts.out, opts.smooth))
        except (FileNotFoundError, ValueError) as err:
            print(f"trainforge {opts.command}: {err}", file=sys.stderr)
            return 2
        return 0
    if opts.script.endswith((".yaml", ".yml", ".json")):
        from .task_run import run_task_config

        run_task_config(opts.script, opts.script_args)
        return 0
    sys.argv = [opts.script, *opts.script_args]
    runpy.run_path(opts.script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
