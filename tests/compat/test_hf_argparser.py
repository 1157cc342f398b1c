"""Our TrainingArguments through transformers' HfArgumentParser, as its run_*.py scripts parse them: from the
command line, a dict, a JSON file and a YAML file, to the same values transformers' own TrainingArguments get."""

from __future__ import annotations

import dataclasses
import json

import pytest

transformers = pytest.importorskip("transformers")

from transformers import HfArgumentParser  # noqa: E402

from trainer import Seq2SeqTrainingArguments, TrainingArguments  # noqa: E402

FLAGS = ["--output_dir", "OUT", "--learning_rate", "3e-4", "--per_device_train_batch_size", "4",
         "--gradient_accumulation_steps", "2", "--num_train_epochs", "2", "--max_steps", "30",
         "--eval_strategy", "steps", "--eval_steps", "10", "--save_steps", "10", "--logging_steps", "5",
         "--lr_scheduler_type", "cosine", "--weight_decay", "0.01", "--seed", "7", "--report_to", "none",
         "--label_names", "labels", "start_positions", "--lr_scheduler_kwargs", '{"num_cycles": 0.5}',
         "--no_dataloader_pin_memory", "--load_best_model_at_end", "--metric_for_best_model", "loss",
         "--save_total_limit", "2", "--bf16", "false", "--optim", "adamw_torch", "--do_train", "--do_eval",
         "--train_sampling_strategy", "sequential", "--dataloader_drop_last", "true"]
SHARED = ["output_dir", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
          "num_train_epochs", "max_steps", "eval_steps", "save_steps", "logging_steps", "weight_decay", "seed",
          "label_names", "lr_scheduler_kwargs", "dataloader_pin_memory", "load_best_model_at_end",
          "metric_for_best_model", "save_total_limit", "bf16", "do_train", "do_eval", "train_sampling_strategy",
          "dataloader_drop_last", "optim", "eval_strategy", "lr_scheduler_type"]


def plain(value):
    return getattr(value, "value", value)


def shared(args) -> dict:
    return {name: plain(getattr(args, name)) for name in SHARED}


@pytest.mark.parametrize("cls", [TrainingArguments, Seq2SeqTrainingArguments])
def test_the_command_line_gives_what_it_gives_transformers(cls, tmp_path):
    flags = [str(tmp_path) if f == "OUT" else f for f in FLAGS]
    (ours,) = HfArgumentParser(cls).parse_args_into_dataclasses(args=flags)
    (theirs,) = HfArgumentParser(transformers.TrainingArguments).parse_args_into_dataclasses(args=flags)
    assert isinstance(ours, cls)
    assert shared(ours) == shared(theirs)
    assert ours.label_names == ["labels", "start_positions"] and ours.lr_scheduler_kwargs == {"num_cycles": 0.5}
    assert ours.report_to == [] and ours.debug == ""


def test_dict_json_and_yaml_give_the_same_arguments(tmp_path):
    import yaml

    values = {"output_dir": str(tmp_path), "learning_rate": 1e-4, "report_to": ["tensorboard"], "fsdp_config": None,
              "deepspeed": None, "label_names": ["labels"], "per_device_train_batch_size": 16,
              "accelerator_config": {"even_batches": True}, "eval_strategy": "epoch", "save_strategy": "epoch"}
    (tmp_path / "args.json").write_text(json.dumps(values))
    (tmp_path / "args.yaml").write_text(yaml.safe_dump(values))
    parser = HfArgumentParser(TrainingArguments)
    (from_dict,) = parser.parse_dict(values)
    (from_json,) = parser.parse_json_file(str(tmp_path / "args.json"))
    (from_yaml,) = parser.parse_yaml_file(str(tmp_path / "args.yaml"))
    assert from_dict.to_dict() == from_json.to_dict() == from_yaml.to_dict()
    assert from_dict.report_to == ["tensorboard"] and from_dict.learning_rate == 1e-4


def test_every_field_round_trips_through_the_parser_and_ours_still_checks_types_after(tmp_path):
    """Every field of ours, with its default value, parses back from a dict; transformers' parser rewrites
    ``Field.type`` in place, and our type check does not read it."""
    args = TrainingArguments(str(tmp_path), report_to="none")
    values = {k: v for k, v in args.to_dict().items() if not k.startswith("_")}
    (parsed,) = HfArgumentParser(TrainingArguments).parse_dict(values)
    assert parsed.to_dict() == args.to_dict()
    with pytest.raises(ValueError, match="learning_rate='1e-4' must be a number, not str"):
        TrainingArguments(str(tmp_path), learning_rate="1e-4")


def test_transformers_fields_all_exist_and_the_ones_for_absent_features_say_so(tmp_path):
    theirs = {f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init}
    ours = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert theirs <= ours, sorted(theirs - ours)
    with pytest.raises(ValueError, match=r"eval_use_gather_object=True is not supported by trainforge: only tensor "
                                         r"predictions are gathered across processes; unset it"):
        TrainingArguments(str(tmp_path), eval_use_gather_object=True)
    with pytest.raises(ValueError, match=r"accelerator_config: \{'split_batches': True\} is not supported"):
        TrainingArguments(str(tmp_path), accelerator_config={"split_batches": True})


def test_the_properties_and_methods_scripts_call(tmp_path):
    from transformers.training_args import ParallelMode

    args = TrainingArguments(str(tmp_path), report_to="none", log_level="info", warmup_ratio=0.1)
    assert args.parallel_mode == ParallelMode.NOT_PARALLEL  # transformers' enum, as scripts compare with it
    assert args.should_save and args.should_log and args.get_process_log_level() == 20
    assert args.get_warmup_steps(200) == 20 and args.ddp_timeout_delta.total_seconds() == 1800
    with args.main_process_first(desc="tokenizing"):
        pass
    args.set_training(learning_rate=1e-3, batch_size=4, num_epochs=2).set_evaluate("steps", steps=5)
    args.set_save("steps", steps=5, total_limit=1).set_logging("steps", steps=5)
    args.set_lr_scheduler("cosine", num_epochs=2)  # like transformers', it sets the epochs too (3 by default)
    assert (args.learning_rate, args.per_device_train_batch_size, args.num_train_epochs) == (1e-3, 4, 2)
    assert (args.eval_strategy, args.save_steps, args.save_total_limit, args.lr_scheduler_type) == \
        ("steps", 5, 1, "cosine")


@pytest.mark.parametrize("warmup", [0.1, 7, 0])
def test_warmup_steps_below_one_is_a_ratio_as_in_transformers_5(tmp_path, warmup):
    ours = TrainingArguments(str(tmp_path), warmup_steps=warmup, report_to="none")
    theirs = transformers.TrainingArguments(str(tmp_path), warmup_steps=warmup, use_cpu=True, report_to="none")
    assert ours.get_warmup_steps(205) == theirs.get_warmup_steps(205) == {0.1: 21, 7: 7, 0: 0}[warmup]
