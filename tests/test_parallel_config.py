"""DeepSpeed "auto" filling and mismatch errors, engine argument validation, and every shipped
engine/launcher config (no processes started here; see test_distributed_engines.py for runs)."""

from __future__ import annotations

import glob
import json
import os
from types import SimpleNamespace

import pytest
import torch

from integrations.deepspeed import fill_for_training, fill_from_arguments, load_config
from integrations.fsdp import load_fsdp_config
from trainer import TrainingArguments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def args(**kw):
    kw.setdefault("output_dir", "/tmp/unused")
    return TrainingArguments(**kw)


def test_auto_values_are_filled_from_the_arguments():
    config = load_config(os.path.join(ROOT, "configs", "ds_zero3.json"))
    a = args(per_device_train_batch_size=8, gradient_accumulation_steps=3, learning_rate=3e-4, adam_beta1=0.8,
             adam_beta2=0.95, adam_epsilon=1e-6, weight_decay=0.1, max_grad_norm=0.5, bf16=True)
    fill_from_arguments(config, a, world_size=2)
    assert config["train_micro_batch_size_per_gpu"] == 8
    assert config["gradient_accumulation_steps"] == 3
    assert config["train_batch_size"] == 8 * 3 * 2
    assert config["gradient_clipping"] == 0.5
    assert config["optimizer"]["params"] == {"lr": 3e-4, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1,
                                             "torch_adam": True}
    assert config["scheduler"]["params"]["warmup_max_lr"] == 3e-4
    assert config["scheduler"]["params"]["warmup_min_lr"] == 0
    assert config["bf16"]["enabled"] is True and config["fp16"]["enabled"] is False
    model = torch.nn.Linear(2, 2)
    model.config = SimpleNamespace(hidden_size=64)
    fill_for_training(config, a, max_steps=100, warmup_steps=7, model=model)
    assert config["scheduler"]["params"]["total_num_steps"] == 100
    assert config["scheduler"]["params"]["warmup_num_steps"] == 7
    zero = config["zero_optimization"]
    assert zero["reduce_bucket_size"] == 64 * 64
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 64 * 64)
    assert zero["stage3_param_persistence_threshold"] == 640
    assert "auto" not in json.dumps(config)


def test_models_without_hidden_size_get_deepspeed_defaults():
    config = {"zero_optimization": {"stage": 3, "reduce_bucket_size": "auto",
                                    "stage3_param_persistence_threshold": "auto"}}
    fill_for_training(config, args(), max_steps=10, warmup_steps=0, model=torch.nn.Linear(2, 2))
    assert config["zero_optimization"]["reduce_bucket_size"] == 500_000_000
    assert config["zero_optimization"]["stage3_param_persistence_threshold"] == 100_000


def test_every_mismatch_is_reported_in_one_error():
    config = {"train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": "auto"}},
              "bf16": {"enabled": True}}
    with pytest.raises(ValueError) as e:
        fill_from_arguments(config, args(per_device_train_batch_size=8, learning_rate=5e-5), world_size=1)
    message = str(e.value)
    assert "the DeepSpeed config disagrees with TrainingArguments" in message
    assert "- train_micro_batch_size_per_gpu=16 but per_device_train_batch_size=8" in message
    assert "- gradient_accumulation_steps=2 but gradient_accumulation_steps=1" in message
    assert "- optimizer.params.lr=0.001 but learning_rate=5e-05" in message
    assert "- bf16.enabled=True but bf16=False" in message
    assert "gradient_clipping" not in message  # 1.0 == max_grad_norm's default
    assert 'Set these config values to "auto"' in message


def test_equal_explicit_values_pass_and_leftover_auto_is_named():
    config = {"train_micro_batch_size_per_gpu": 8, "train_batch_size": 16, "gradient_accumulation_steps": 1}
    fill_from_arguments(config, args(per_device_train_batch_size=8), world_size=2)
    with pytest.raises(ValueError, match=r"\"auto\" values the Trainer cannot fill: \['zero_optimization.sub_group_size'\]"):
        fill_for_training({"zero_optimization": {"sub_group_size": "auto"}}, args(), 10, 0, torch.nn.Linear(1, 1))


def test_config_sources(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text('{"zero_optimization": {"stage": 2}}')
    assert load_config(str(path)) == {"zero_optimization": {"stage": 2}}
    assert load_config('{"a": 1}') == {"a": 1}
    original = {"a": {"b": 1}}
    copy = load_config(original)
    copy["a"]["b"] = 2
    assert original == {"a": {"b": 1}}  # never edits the caller's dict
    with pytest.raises(FileNotFoundError, match="deepspeed='/no/such.json': no such file"):
        load_config("/no/such.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_config(str(bad))


@pytest.mark.parametrize("kwargs, message", [
    ({"sharded_ddp": "zero_dp_2"}, "sharded_ddp='zero_dp_2' is FairScale's FullyShardedDataParallel, which needs CUDA "
                                   "GPUs. On the CPU use sharded_ddp='simple'"),
    ({"sharded_ddp": "zero_dp_3 offload"}, "which needs CUDA GPUs"),
    ({"sharded_ddp": "simpel"}, "sharded_ddp='simpel': unknown option(s) ['simpel']"),
    ({"sharded_ddp": "simple zero_dp_2"}, "'simple' cannot be combined"),
    ({"fsdp": "full_shard", "sharded_ddp": "simple"}, "sharded_ddp and fsdp were both set"),
    ({"fsdp": "full_shard", "deepspeed": {"zero_optimization": {"stage": 2}}}, "deepspeed and fsdp were both set"),
    ({"fsdp": "offload"}, "fsdp='offload' names no sharding mode: add 'full_shard'"),
    ({"fsdp": "hybrid_shard"}, "'hybrid_shard' (a 2-D mesh per node) is not supported"),
    ({"fsdp": "full_shard", "fsdp_config": {"min_params": 5}}, "fsdp_config has unknown key(s) ['min_params']"),
    ({"fsdp": "full_shard", "fsdp_config": {"version": 1}}, "FSDP1) is not supported"),
    ({"fsdp_config": {"min_num_params": 5}}, "fsdp_config is set but fsdp is not"),
    ({"fsdp": "full_shard", "fp16": True}, "fp16=True with fsdp"),
    ({"sharded_ddp": "simple", "save_on_each_node": True}, "save_on_each_node=True with sharded_ddp"),
    ({"deepspeed": "/no/such.json"}, "deepspeed='/no/such.json': no such file"),
    ({"deepspeed": {"scheduler": {"type": "WarmupLR"}}}, "a 'scheduler' but no 'optimizer' section"),
])
def test_engine_arguments_are_checked_early(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        args(**kwargs)
    assert message in str(e.value)


def test_fsdp_config_accepts_hf_prefixed_keys_and_files(tmp_path):
    path = tmp_path / "fsdp.json"
    path.write_text('{"fsdp_min_num_params": 10, "fsdp_state_dict_type": "SHARDED_STATE_DICT"}')
    assert load_fsdp_config(str(path)) == {"min_num_params": 10, "state_dict_type": "SHARDED_STATE_DICT"}


def test_shipped_deepspeed_configs_fill_completely():
    paths = glob.glob(os.path.join(ROOT, "configs", "ds_*.json"))
    assert len(paths) == 3
    for path in paths:
        config = fill_from_arguments(load_config(path), args(), world_size=2)
        fill_for_training(config, args(), max_steps=50, warmup_steps=5, model=torch.nn.Linear(1, 1))
        assert "auto" not in json.dumps(config), path
        assert config["zero_optimization"]["stage"] in (2, 3)


def test_shipped_fsdp_and_accelerate_configs_load():
    load_fsdp_config(os.path.join(ROOT, "configs", "fsdp.json"))
    from accelerate.commands.config.config_args import ClusterConfig

    for path in glob.glob(os.path.join(ROOT, "configs", "accelerate_*.yaml")):
        config = ClusterConfig.from_yaml_file(path)
        assert config.distributed_type.value == "MULTI_GPU", path
        assert config.num_processes >= 2


@pytest.mark.parametrize("kwargs, named", [({"sharded_ddp": "simple"}, "sharded_ddp='simple'"),
                                           ({"fsdp": "full_shard"}, "fsdp='full_shard'")])
def test_sharding_without_a_launcher_is_refused_at_trainer_construction(tmp_path, kwargs, named):
    pytest.importorskip("fairscale")
    from tests.fixtures import RegressionModel
    from trainer import Trainer

    with pytest.raises(ValueError) as e:
        Trainer(model=RegressionModel(), args=args(output_dir=str(tmp_path), **kwargs))
    assert f"{named} needs a distributed launch: run the script with `torchrun --nproc_per_node=N`" in str(e.value)
