"""A 2-process (torchrun, gloo) training run for the distributed resume and preemption tests.

--mode straight: train to the end; cut: stop at --stop_at with a checkpoint; resume: continue from
the newest checkpoint. Rank 0 saves the final weights to --final. Every rank prints
``PID <rank> <pid>`` at start and ``STEP <rank> <step>`` after each step. With --term_in_eval N, the
run evaluates at step 8 and rank 1 sends itself SIGTERM at its N-th evaluation batch; every rank prints
``EVALBATCH <rank> <count>`` after each evaluation batch.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from tests.fixtures import RegressionDataset, RegressionDropoutModel  # noqa: E402
from trainer import Trainer, TrainerCallback, TrainingArguments  # noqa: E402


class TokenCountedModel(RegressionDropoutModel):
    main_input_name = "input_x"  # what include_num_input_tokens_seen counts


class Report(TrainerCallback):
    def __init__(self, stop_at: int | None):
        self.stop_at = stop_at

    def on_train_begin(self, args, state, control, **kwargs):
        print(f"PID {args.process_index} {os.getpid()}", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        print(f"STEP {args.process_index} {state.global_step}", flush=True)
        if state.global_step == self.stop_at:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):  # after the save: the run looks killed, not ended
        if state.global_step == self.stop_at:
            control.should_training_stop = True


class TermInEval(TrainerCallback):
    def __init__(self, at: int):
        self.at, self.batches = at, 0

    def on_prediction_step(self, args, state, control, **kwargs):
        self.batches += 1
        print(f"EVALBATCH {args.process_index} {self.batches}", flush=True)
        if args.process_index == 1 and self.batches == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--final", required=True)
    parser.add_argument("--mode", choices=["straight", "cut", "resume"], required=True)
    parser.add_argument("--stop_at", type=int, default=None)
    parser.add_argument("--max_steps", type=int, default=24)
    parser.add_argument("--report_to", default="none")
    parser.add_argument("--count_tokens", action="store_true", help="count input_x values as tokens")
    parser.add_argument("--term_in_eval", type=int, default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    args = TrainingArguments(
        output_dir=opts.output_dir, max_steps=opts.max_steps, per_device_train_batch_size=4, learning_rate=0.05,
        save_strategy="no", logging_steps=5, disable_tqdm=True, seed=5, report_to=opts.report_to,
        include_num_input_tokens_seen=opts.count_tokens,
        **({"eval_strategy": "steps", "eval_steps": 8, "per_device_eval_batch_size": 2} if opts.term_in_eval else {}),
    )
    callbacks = [Report(opts.stop_at if opts.mode == "cut" else None)]
    if opts.term_in_eval:
        callbacks.append(TermInEval(opts.term_in_eval))
    trainer = Trainer(model_init=TokenCountedModel, args=args, train_dataset=RegressionDataset(64),
                      eval_dataset=RegressionDataset(256, seed=3) if opts.term_in_eval else None, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=True if opts.mode == "resume" else None)
    if opts.count_tokens:
        print(f"TOKENS {args.process_index} {trainer.state.num_input_tokens_seen}", flush=True)
    if opts.mode != "cut":
        trainer.save_model(opts.final)


if __name__ == "__main__":
    main()
