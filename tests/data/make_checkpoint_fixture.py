"""Builds ``tests/data/checkpoint_v1/checkpoint-5``: a checkpoint in the on-disk format of trainforge 0.1,
so that ``tests/test_checkpoint_format.py`` proves old checkpoints still resume, bit-exactly.

The run: ``RegressionModel`` on ``RegressionDataset(64)``,
batch 8 (8 steps an epoch), 12 steps, saved at step 5 (in the middle of the first epoch, so the dataloader
position matters) with the loss of steps 4-5 not logged yet (logging every 3 steps). The fixture was made
with the code of commit 8b0edd3, before the checkpoint code moved into ``trainer/checkpointing.py``. The model
draws no random numbers: since the training step's random streams are seeded per batch
(``trainer/rng_streams.py``), a run with dropout draws other masks than that code did, while the file
format, the optimizer, schedule, data position and loss window are what this fixture checks::

    git worktree add /tmp/v1 8b0edd3 && PYTHONPATH=/tmp/v1 python tests/data/make_checkpoint_fixture.py

``fixture_args`` is imported by the test, so the test trains with the same arguments.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "checkpoint_v1", "checkpoint-5")


def fixture_args(output_dir: str, **overrides):
    from trainer import TrainingArguments

    values = dict(output_dir=output_dir, max_steps=12, per_device_train_batch_size=8, learning_rate=0.05,
                  save_strategy="steps", save_steps=5, logging_steps=3, seed=11, disable_tqdm=True,
                  report_to="none")
    values.update(overrides)
    return TrainingArguments(**values)


def main() -> None:
    from tests.fixtures import RegressionDataset, RegressionModel
    from trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model_init=RegressionModel, args=fixture_args(tmp), train_dataset=RegressionDataset(64))
        trainer.train()
        shutil.rmtree(FIXTURE, ignore_errors=True)
        shutil.copytree(os.path.join(tmp, "checkpoint-5"), FIXTURE)
    print("wrote", FIXTURE, sorted(os.listdir(FIXTURE)))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    main()
