"""One process of a 2-process gloo run whose rank 1 fails at step 3: ``--fault die`` exits at once,
``--fault hang`` stops answering (sleeps). Started as two plain processes with the variables torchrun
sets, so no launcher kills the survivor: it must fail on its own, within ddp_timeout. Prints
``STEP <rank> <step>`` after each step and ``FAILED <rank> <seconds since the fault step>`` on failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from tests.fixtures import RegressionDataset, RegressionDropoutModel  # noqa: E402
from trainer import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

FAULT_STEP = 3


class Fault(TrainerCallback):
    def __init__(self, fault: str):
        self.fault = fault
        self.at = None

    def on_step_end(self, args, state, control, **kwargs):
        print(f"STEP {args.process_index} {state.global_step}", flush=True)
        if state.global_step == FAULT_STEP:
            self.at = time.monotonic()
            if args.process_index == 1:
                if self.fault == "die":
                    os._exit(3)
                time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--fault", choices=["die", "hang"], required=True)
    parser.add_argument("--ddp_timeout", type=int, default=20)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    args = TrainingArguments(output_dir=opts.output_dir, max_steps=50, per_device_train_batch_size=4,
                             save_strategy="no", disable_tqdm=True, report_to="none", ddp_timeout=opts.ddp_timeout)
    fault = Fault(opts.fault)
    trainer = Trainer(RegressionDropoutModel(), args, train_dataset=RegressionDataset(512), callbacks=[fault])
    try:
        trainer.train()
    except Exception:
        print(f"FAILED {args.process_index} {time.monotonic() - fault.at:.1f}", flush=True)
        raise


if __name__ == "__main__":
    main()
