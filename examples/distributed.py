"""The quickstart under every launcher: the same script, one process or many, plain DDP or sharded.

Nothing in the script changes between launches; the launcher sets the processes up and the Trainer
reads them (rank, world size, backend: gloo on CPU, NCCL on GPUs). Each command trains the digits
CNN with ``per_device_train_batch_size`` per process, so N processes make N times the global batch.

    # one process
    python examples/distributed.py

    # 2 processes on this machine (CPU or GPUs)
    torchrun --nproc_per_node=2 examples/distributed.py

    # 2 nodes of 2 processes; run on each node with its --node_rank (0 and 1)
    torchrun --nnodes=2 --nproc_per_node=2 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 examples/distributed.py

    # accelerate's launcher, with a launch config from configs/
    accelerate launch --config_file configs/accelerate_cpu_2proc.yaml examples/distributed.py

    # DeepSpeed ZeRO-2 (ZeRO-3: configs/ds_zero3.json, CPU offload: configs/ds_zero3_offload.json)
    deepspeed --num_gpus 2 examples/distributed.py --deepspeed configs/ds_zero2.json

    # torch FSDP2, fully sharded
    torchrun --nproc_per_node=2 examples/distributed.py --fsdp full_shard

    # FairScale OSS + ShardedDataParallel
    torchrun --nproc_per_node=2 examples/distributed.py --sharded_ddp simple

Every process prints one ``RANK`` line (its share of the data, its predictions); the main process
prints the metrics. ``predict()`` returns every eval row, in dataset order, on every process.
Checkpoints go to ``--output_dir`` (default ``outputs/distributed``) and resume with
``--resume_from_checkpoint auto`` under any launcher with the same number of processes.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import Trainer  # noqa: E402
from trainer.cli import parse_training_args  # noqa: E402
from trainer.demo import build  # noqa: E402


def parse(argv: list[str] | None = None):
    """(the script's own options, TrainingArguments) from the command line."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint path, 'auto' or 'true'")
    opts, rest = own.parse_known_args(argv)
    args = parse_training_args(rest, {
        "output_dir": "outputs/distributed", "num_train_epochs": 4, "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 128, "learning_rate": 3e-3, "eval_strategy": "epoch",
        "save_strategy": "epoch", "save_total_limit": 2, "logging_strategy": "epoch", "seed": 0,
    })
    return opts, args


def main(argv: list[str] | None = None) -> dict:
    opts, args = parse(argv)
    torch.set_num_threads(1)
    task = build(args.seed)
    trainer = Trainer(args=args, **task)
    resume = {"true": True}.get(str(opts.resume_from_checkpoint).lower(), opts.resume_from_checkpoint)
    trainer.train(resume_from_checkpoint=resume)
    prediction = trainer.predict(task["eval_dataset"])
    accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    per_epoch = len(trainer.get_train_dataloader())
    print(f"RANK {args.process_index} of {args.world_size}: {per_epoch} batches per epoch, "
          f"{len(prediction.predictions)} rows predicted, accuracy {accuracy:.4f}", flush=True)
    if trainer.is_world_process_zero():
        trainer.log_metrics("predict", prediction.metrics)
    return prediction.metrics


if __name__ == "__main__":
    main()
