"""One 'node' of a simulated 2-node run (torchrun --nnodes=2, one process each, loopback rendezvous).

Each node runs in its own working directory, standing in for node-local disks. Prints
``LEVEL <rank> <trainer logger level>`` and ``DONE <rank> <global_step>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from tests.fixtures import RegressionDataset, RegressionModel  # noqa: E402
from trainer import Trainer, TrainingArguments  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log_on_each_node", default="true")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    args = TrainingArguments(output_dir="out", max_steps=4, save_strategy="steps", save_steps=2,
                             save_on_each_node=True, log_on_each_node=opts.log_on_each_node == "true",
                             log_level="info", log_level_replica="error", disable_tqdm=True,
                             per_device_train_batch_size=4)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(32))
    print(f"LEVEL {trainer.runtime.process_index} {logging.getLevelName(logging.getLogger('trainer').level)}",
          flush=True)
    trainer.train()
    print(f"DONE {trainer.runtime.process_index} {trainer.state.global_step}", flush=True)


if __name__ == "__main__":
    main()
