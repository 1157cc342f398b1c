"""DefaultFlowCallback: decides when the loop logs, evaluates and saves.

It sets flags on :class:`TrainerControl` only; it logs nothing itself.

| decision        | when                                                                    |
|-----------------|-------------------------------------------------------------------------|
| should_log      | step 1 if ``logging_first_step``; every ``logging_steps`` steps; epoch end with ``logging_strategy="epoch"`` |
| should_evaluate | every ``eval_steps`` steps or at epoch end, once ``eval_delay`` has passed; at the last step with ``eval_strategy="steps"`` |
| should_save     | every ``save_steps`` steps or at epoch end; at the last step with ``save_strategy="steps"`` |
| should_training_stop | when ``global_step`` reaches ``max_steps``                          |
"""

from __future__ import annotations

from .base import TrainerCallback
from .strategies import IntervalStrategy, SaveStrategy


class DefaultFlowCallback(TrainerCallback):
    """The built-in schedule of logging, evaluation and checkpoint saving."""

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == IntervalStrategy.STEPS and step % state.logging_steps == 0:
            control.should_log = True
        if (
            args.eval_strategy == IntervalStrategy.STEPS
            and step % state.eval_steps == 0
            and args.eval_delay <= step
        ):
            control.should_evaluate = True
        if args.save_strategy == SaveStrategy.STEPS and step % state.save_steps == 0:
            control.should_save = True
        if step >= state.max_steps:
            control.should_training_stop = True
            if args.eval_strategy == IntervalStrategy.STEPS and args.eval_delay <= step:
                control.should_evaluate = True  # the final model is evaluated, as transformers 5 does
            if args.save_strategy == SaveStrategy.STEPS:
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == IntervalStrategy.EPOCH:
            control.should_log = True
        if args.eval_strategy == IntervalStrategy.EPOCH and args.eval_delay <= state.epoch:
            control.should_evaluate = True
        if args.save_strategy == SaveStrategy.EPOCH:
            control.should_save = True
        return control
