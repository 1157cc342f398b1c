"""The training loop (the evaluation loop is in ``eval_loop.py``).

``run_training`` is one ``train()`` at a batch size: sizes, resume, engine preparation, the loop,
the end of training. ``TrainingLoop`` runs the epochs and steps; it calls the Trainer's overridable
hooks (``training_step``, ``log``, ``evaluate``...) and fires the callback events in the order documented in
``callbacks/base.py``. On the hot path it keeps step losses as device tensors in a list and
syncs (``.item()``) only when a log, an evaluation or a save is due.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from callbacks import TrainerControl, TrainerState

from . import checkpoint as ckpt
from . import neftune
from .adapters import keep_quantized_weights_trainable
from .arguments import resolve_steps
from .checkpoint import list_checkpoints, restore_rng_state
from .checkpointing import loop_parts
from .data import close_workers, epoch_plan, has_length, set_dataloader_epoch
from .kernels import apply_liger_kernel
from .optim import num_warmup_steps, steps_on_metric
from .optimizers_external import set_optimizer_mode
from .outputs import TrainOutput
from .preemption import EvaluationInterrupted, PreemptionHandler, stop_requested
from .recompute import enable_activation_checkpointing
from .rng_streams import seed_step
from .speed_memory import speed_metrics

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

logger = logging.getLogger(__name__)

_FOLD_EVERY = 1024  # pending step losses folded into one tensor past this many (bounded memory)


class LossWindow:
    """Step losses since the last log, kept on the device.

    With ``logging_nan_inf_filter`` a nan/inf loss is left out of the logged mean (it counts as the mean of the
    window's finite losses), and a warning names its step, once per run; a window without any finite loss logs
    nan, never a made-up 0. Without the filter the logged loss is whatever the losses sum to.
    """

    def __init__(self, nan_inf_filter: bool, device: torch.device):
        self.nan_inf_filter = nan_inf_filter
        self.device = device
        self.pending: list[torch.Tensor] = []
        self.steps: list[int | None] = []  # the step of each pending loss (None: restored from a checkpoint)
        self.folded = torch.zeros((), device=device)
        self.total = torch.zeros((), device=device)  # every loss of the run, for train_loss
        self.first_bad_step = torch.full((), -1, device=device)  # first step with a nan/inf loss (0: unknown)
        self.warned = False

    def add(self, loss: torch.Tensor, step: int | None = None) -> None:
        self.pending.append(loss)
        self.steps.append(step)
        if len(self.pending) >= _FOLD_EVERY:
            self.folded = self.folded + self._filtered_sum()

    def _filtered_sum(self) -> torch.Tensor:
        losses = torch.stack(self.pending).float()
        steps, self.pending, self.steps = self.steps, [], []
        if self.nan_inf_filter:
            finite = torch.isfinite(losses)
            count = finite.sum()
            mean_finite = torch.where(count > 0, torch.where(finite, losses, 0).sum() / count.clamp(min=1), torch.nan)
            losses = torch.where(finite, losses, mean_finite)
            # the first bad step, kept on the device: read with the logged loss, no sync of its own
            known = torch.tensor([s or 0 for s in steps], device=self.device)
            bad = ~finite
            first = torch.where(bad.any(), known[bad.int().argmax()], -1)
            self.first_bad_step = torch.where(self.first_bad_step < 0, first, self.first_bad_step)
        return losses.sum()

    def warn_once(self, first_bad_step: float) -> None:
        """After a log has read ``first_bad_step``: name the first step whose loss was nan/inf, once per run."""
        if first_bad_step < 0 or self.warned:
            return
        self.warned = True
        where = f"at step {int(first_bad_step)}" if first_bad_step > 0 else "in a step before the resume"
        logger.warning("The training loss is nan/inf %s: logging_nan_inf_filter=True leaves such losses out of the "
                       "logged mean (a log of none but such losses is nan). Said once per run; set "
                       "logging_nan_inf_filter=False to log them as they are", where)

    def state_dict(self) -> dict:
        """Plain numbers (syncs; called only when saving a checkpoint)."""
        return {
            "pending": [t.item() for t in self.pending],
            "dtype": str(self.pending[0].dtype).replace("torch.", "") if self.pending else "float32",
            "folded": self.folded.item(),
            "total": self.total.item(),
        }

    def load_state_dict(self, state: dict) -> None:
        dtype = getattr(torch, state["dtype"])
        values = torch.tensor(state["pending"], dtype=dtype, device=self.device)
        self.pending = list(values.unbind(0)) if len(state["pending"]) else []
        self.steps = [None] * len(self.pending)
        self.folded = torch.tensor(state["folded"], dtype=torch.float32, device=self.device)
        self.total = torch.tensor(state["total"], dtype=torch.float32, device=self.device)

    def take(self) -> torch.Tensor:
        """Sum of the window (device tensor) and reset it."""
        window = self.folded + (self._filtered_sum() if self.pending else 0)
        self.folded = torch.zeros((), device=self.device)
        self.total = self.total + window
        return window


class TrainingLoop:
    """One ``train()`` call: sizes, the epoch/step loops and the log/evaluate/save decisions."""

    def __init__(self, trainer: Trainer, batch_size: int):
        self.trainer = trainer
        self.args = trainer.args
        self.batch_size = batch_size
        # what the loop owns across steps, and what a checkpoint saves of it (checkpointing.loop_parts)
        self.window = LossWindow(self.args.logging_nan_inf_filter, trainer.runtime.device)
        self.last_logged_step: int | None = None  # None: the step the run starts at
        self.dataloader = None
        self.start_time: float | None = None  # when run() began (time.time(), as transformers passes it to log())
        # set by a restore, used when the first epoch opens
        self.resume_path: str | None = None
        self.complete = False  # the checkpoint resumed from ends the run: no step is taken
        self.pending_data_position = None
        self.pending_rng = None

    @property
    def counts_tokens(self) -> bool:
        return counts_input_tokens(self.args)

    # -- sizes ----------------------------------------------------------------------------
    def plan(self, dataloader) -> None:
        self.total_batch_size = self.batch_size * self.args.gradient_accumulation_steps * self.trainer.runtime.num_processes
        self.batches_per_epoch, self.updates_per_epoch, self.max_steps, self.num_epochs = epoch_plan(self.args,
                                                                                                     dataloader)

    def new_state(self) -> TrainerState:
        args, trainer = self.args, self.trainer
        state = TrainerState(
            max_steps=self.max_steps,
            num_train_epochs=self.num_epochs if self.num_epochs != sys.maxsize else 0,
            train_batch_size=self.batch_size,
            logging_steps=resolve_steps(args.logging_steps, self.max_steps),
            eval_steps=resolve_steps(args.eval_steps or args.logging_steps, self.max_steps),
            save_steps=resolve_steps(args.save_steps, self.max_steps),
            is_local_process_zero=trainer.runtime.is_local_main_process,
            is_world_process_zero=trainer.runtime.is_main_process,
        )
        state.epoch = 0.0
        return state

    # -- resume ---------------------------------------------------------------------------
    def start_position(self) -> tuple[int, int]:
        """``(epoch, update step within it)`` to start from; (0, 0) for a new run."""
        if self.resume_path is None:
            return 0, 0
        state = self.trainer.state
        if self.updates_per_epoch is None:  # iterable dataset: epochs count completed passes
            return int(state.epoch or 0), 0
        return state.global_step // self.updates_per_epoch, state.global_step % self.updates_per_epoch

    def _open_first_epoch(self, dataloader, epoch: int, update: int):
        """The iterator of the first epoch of this call, at the saved data position when resuming."""
        args = self.args
        mid_epoch = update > 0 or self.updates_per_epoch is None  # an iterable's position is always restored
        if self.resume_path is not None and mid_epoch:
            if args.ignore_data_skip:
                logger.info("Resuming at epoch %d step %d; ignore_data_skip=True: the epoch's data starts over",
                            epoch, update)
            elif self.pending_data_position is None and self.updates_per_epoch is None:
                logger.warning("%s has no dataloader state: the iterable's data starts over", self.resume_path)
            elif self.pending_data_position is None:  # e.g. a transformers checkpoint
                skip = update * args.gradient_accumulation_steps
                logger.warning("%s has no dataloader state: the epoch's first %d batches are read and dropped "
                               "(Trainer.get_resumed_dataloader)", self.resume_path, skip)
                return iter(self.trainer.get_resumed_dataloader(dataloader, skip))
            else:
                dataloader.load_state_dict(self.pending_data_position)
                dataset = getattr(dataloader, "dataset", None)
                if isinstance(dataset, torch.utils.data.IterableDataset) and not hasattr(dataset, "state_dict"):
                    logger.warning("Resuming: the IterableDataset has no state_dict, so its batches before the "
                                   "checkpoint are replayed (read and dropped)")
                else:
                    logger.info("Resuming at epoch %d step %d: data position restored from the dataloader state "
                                "(no batch replayed)", epoch, update)
        return iter(dataloader)

    # -- the loop -------------------------------------------------------------------------
    def fire(self, event: str):
        """Fire a callback event; the control it returns (a callback may hand back a new one) is the
        Trainer's from then on, which ``log()``, ``evaluate()`` and the saves update too."""
        trainer = self.trainer
        trainer.control = getattr(trainer.callback_handler, event)(self.args, trainer.state, trainer.control)
        return trainer.control

    def run(self, dataloader) -> dict:
        trainer, args = self.trainer, self.args
        rt = trainer.runtime
        state = trainer.state
        fire = self.fire
        model = trainer.model_wrapped
        optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
        accum = args.gradient_accumulation_steps
        clip = args.max_grad_norm is not None and args.max_grad_norm > 0
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        step_scheduler = scheduler is not None and not steps_on_metric(scheduler)
        check_skipped = rt.scaler is not None or rt.strategy.may_skip_steps  # fp16 overflow skips the step
        check_finite = args.nonfinite_loss != "ignore"
        step_loss = None  # this update's loss, summed over its micro-batches (with check_finite)
        self.nonfinite_steps = 0
        count_flos = trainer._counts_flos()
        count_tokens = self.counts_tokens
        empty_cache_every = args.torch_empty_cache_steps if torch.cuda.is_available() else None
        self.tokens_pending = 0  # this process's input tokens since the last fold into state (int or tensor)
        preemption = PreemptionHandler(args.save_on_interrupt)
        self.dataloader = dataloader
        if self.last_logged_step is None:
            self.last_logged_step = state.global_step
        self.grad_norm = None
        self.step_lr = None
        self.preempted = False
        first_epoch, update = self.start_position()
        start_step = state.global_step
        self.start_time = start_time = time.time()
        trainer._initial_num_input_tokens_seen = state.num_input_tokens_seen  # after a restore: this call's tokens

        fire("on_train_begin")
        if args.eval_on_start and state.global_step == 0:  # a sanity check, not a candidate for the best model
            trainer.evaluate()
        preemption.install()
        noise = neftune.activate(trainer.model, args.neftune_noise_alpha) if args.neftune_noise_alpha else None
        trainer._preemption = preemption  # read after each step and each evaluation batch (stop_requested)
        try:
            end_epoch = first_epoch if self.complete else self.num_epochs  # a finished run takes no step
            for epoch in range(first_epoch, end_epoch):
                set_dataloader_epoch(dataloader, epoch)
                model.train()
                trainer._past = None
                fire("on_epoch_begin")
                if epoch == first_epoch:
                    iterator = self._open_first_epoch(dataloader, epoch, update)
                    if self.pending_rng is not None:
                        restore_rng_state(self.pending_rng)  # after the iterator exists, before the first step
                        self.pending_rng = None
                else:
                    iterator = iter(dataloader)
                    update = 0
                while self.updates_per_epoch is None or update < self.updates_per_epoch:
                    if self.batches_per_epoch is None:
                        n_micro = accum
                    else:
                        n_micro = min(accum, self.batches_per_epoch - update * accum)
                    # the step's micro-batches first, and the label tokens they hold (trainer/loss.py)
                    batches, num_items = trainer.get_batch_samples(iterator, n_micro, rt.device)
                    if not batches:  # iterable dataset exhausted
                        break
                    n_micro = trainer.current_gradient_accumulation_steps = len(batches)
                    fire("on_step_begin")
                    for micro, inputs in enumerate(batches):
                        seed_step(args.seed, state.global_step, micro)  # dropout's stream: the batch's own
                        if count_flos:
                            state.total_flos += trainer.floating_point_ops(inputs)
                        if count_tokens:
                            self.tokens_pending = self.tokens_pending + count_input_tokens(
                                trainer.model, inputs, args.include_num_input_tokens_seen)
                        if micro < n_micro - 1:
                            with rt.no_sync(model):
                                loss = trainer.training_step(model, inputs, num_items)
                            self.window.add(loss, state.global_step + 1)
                            fire("on_substep_end")
                        else:
                            loss = trainer.training_step(model, inputs, num_items)
                            self.window.add(loss, state.global_step + 1)
                        if check_finite:
                            step_loss = loss if micro == 0 else step_loss + loss
                    if check_finite and self.nonfinite(step_loss):
                        optimizer.zero_grad(set_to_none=True)  # 'skip': this update is dropped
                    else:
                        if clip:
                            self.grad_norm = rt.clip_grad_norm(params, args.max_grad_norm, model, optimizer)
                        fire("on_pre_optimizer_step")
                        optimizer.step()
                        fire("on_optimizer_step")
                        self.step_lr = optimizer.param_groups[0]["lr"]  # the rate this step used, as logged
                        if step_scheduler and not (check_skipped and optimizer.step_was_skipped):
                            scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    update += 1
                    state.global_step += 1
                    if empty_cache_every and state.global_step % empty_cache_every == 0:
                        torch.cuda.empty_cache()
                    # the fraction of the epoch's batches consumed (as transformers counts it: with accumulation
                    # it is not update / updates_per_epoch); an iterable's epoch counts completed passes
                    state.epoch = (epoch + min(update * accum, self.batches_per_epoch) / self.batches_per_epoch
                                   if self.updates_per_epoch else float(epoch))
                    control = fire("on_step_end")
                    if control.should_log or control.should_evaluate or control.should_save:
                        self.log_evaluate_save(model)
                    if stop_requested(trainer):  # all ranks agree (a plain read when not distributed)
                        self.preempt()
                        break
                    if trainer.control.should_epoch_stop or trainer.control.should_training_stop:
                        break
                if self.preempted:
                    break
                if self.updates_per_epoch is None:
                    if update == 0:
                        raise ValueError(
                            "the training dataloader yielded no batch in an epoch: the dataset is empty (or smaller "
                            "than one batch with dataloader_drop_last=True)"
                        )
                    if not trainer.control.should_training_stop:  # the pass ran to its end
                        state.epoch = float(epoch + 1)
                control = fire("on_epoch_end")
                if control.should_log or control.should_evaluate or control.should_save:
                    self.log_evaluate_save(model)
                if trainer.control.should_training_stop:
                    break
        finally:
            preemption.uninstall()
            if noise is not None:
                neftune.deactivate(noise)  # the model trained on is returned and saved clean
            trainer._preemption = None
            close_workers(dataloader)

        steps_done = state.global_step - start_step
        self.fold_tokens()
        self.window.take()
        total, first_bad = torch.stack([self.window.total.float(), self.window.first_bad_step.float()]).tolist()
        self.window.warn_once(first_bad)
        train_loss = (total / state.global_step) if state.global_step else 0.0
        tokens = state.num_input_tokens_seen - trainer._initial_num_input_tokens_seen
        metrics = speed_metrics("train", start_time, num_samples=steps_done * self.total_batch_size,
                                num_steps=steps_done, num_tokens=tokens if args.include_tokens_per_second else None)
        metrics["total_flos"] = float(state.total_flos)
        metrics["train_loss"] = train_loss
        return metrics  # log() adds epoch and num_input_tokens_seen

    def nonfinite(self, step_loss: torch.Tensor) -> bool:
        """Whether this update's loss is nan/inf on any process (one host read); 'stop' raises, 'skip' warns."""
        bad = not bool(torch.isfinite(step_loss.detach()).all())
        if not self.trainer.runtime.reduce_any(bad):
            return False
        state = self.trainer.state
        step = state.global_step + 1
        value = step_loss.item() if step_loss.numel() == 1 else "nan/inf"
        if self.args.nonfinite_loss == "stop":
            self.trainer.checkpoint_writer.wait()  # an asynchronous save in flight completes first
            saved = list_checkpoints(self.args.output_dir)
            kept = f"{saved[-1]} is the last checkpoint" if saved else "no checkpoint was written"
            raise FloatingPointError(
                f"the training loss is {value} at global step {step} (epoch {state.epoch or 0:.2f}); stopped by "
                f"nonfinite_loss='stop' before the optimizer step, {kept}. Lower learning_rate, set max_grad_norm, "
                "use bf16 rather than fp16, or check the batch for bad values"
            )
        self.nonfinite_steps += 1
        logger.warning("The training loss is %s at global step %d: update skipped (nonfinite_loss='skip'; %d "
                       "skipped in this run)", value, step, self.nonfinite_steps)
        return True

    def fold_tokens(self) -> None:
        """Add every process's pending token count to ``state.num_input_tokens_seen`` (before a log or save)."""
        if not self.counts_tokens:
            return
        self.trainer.state.num_input_tokens_seen += self.trainer.runtime.reduce_sum(self.tokens_pending)
        self.tokens_pending = 0

    # -- log / evaluate / save ------------------------------------------------------------
    def metric_value(self, metrics: dict) -> float:
        """The value of ``metric_for_best_model`` in an evaluation's metrics (``eval_`` prefix optional)."""
        name = self.args.metric_for_best_model or "loss"
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            produced = sorted(k for k in metrics if k.startswith("eval_"))
            raise ValueError(
                f"metric_for_best_model={name!r}: the evaluation produced no {key!r}; it produced {produced}. Set "
                "metric_for_best_model to one of them, or make compute_metrics return it"
            )
        return float(metrics[key])

    def track_best(self, metrics: dict) -> bool:
        """Update ``state.best_metric``/``best_global_step`` from an evaluation; True if it improved."""
        if self.args.metric_for_best_model is None:
            return False
        value = self.metric_value(metrics)
        best = self.trainer.state.best_metric
        better = best is None or (value > best if self.args.greater_is_better else value < best)
        if better:
            self.trainer.state.best_metric = value
            self.trainer.state.best_global_step = self.trainer.state.global_step
        return better

    def log_evaluate_save(self, model) -> None:
        """Log, evaluate and save as the control asks. A schedule-free optimizer is in eval mode meanwhile, so that
        the evaluated and saved weights are its averaged ones."""
        control = self.trainer.control
        modes = control.should_evaluate or control.should_save
        if modes:
            set_optimizer_mode(self.trainer.optimizer, training=False)
        try:
            self._log_evaluate_save(model)
        finally:
            if modes:
                set_optimizer_mode(self.trainer.optimizer, training=True)

    def _log_evaluate_save(self, model) -> None:
        trainer, control = self.trainer, self.trainer.control
        self.fold_tokens()
        if control.should_log and trainer.state.global_step > self.last_logged_step:
            self.log_training()
        metrics = None
        if control.should_evaluate:
            try:
                metrics = trainer.evaluate()
            except EvaluationInterrupted as stopped:
                logger.warning("%s at step %d: its metrics are not logged", stopped, trainer.state.global_step)
                self.preempt()
                return
            self.track_best(metrics)
            scheduler = trainer.lr_scheduler
            if steps_on_metric(scheduler):
                scheduler.step(self.metric_value(metrics))
            model.train()
            trainer._past = None
        if trainer.args.save_strategy == "best":
            control.should_save = trainer.state.best_global_step == trainer.state.global_step and metrics is not None
        if control.should_save:
            trainer.save_training_checkpoint()
        if metrics is not None:  # after the save, so a search backend can keep the trial's checkpoint
            if trainer._search is not None:
                trainer._search.report(metrics)  # the backend may prune the trial here

    def preempt(self) -> None:
        """A preemption signal came: save this step (unless saved already) and stop training."""
        self.preempted = True
        if self.trainer.last_saved_step != self.trainer.state.global_step:
            self.trainer.save_training_checkpoint()
        self.trainer.control.should_training_stop = True

    def log_training(self) -> None:
        trainer, state = self.trainer, self.trainer.state
        steps = state.global_step - self.last_logged_step
        window = self.window.take()
        read = [window.float(), self.window.first_bad_step.float()]
        if self.grad_norm is not None:
            read.append(torch.as_tensor(self.grad_norm, device=window.device).detach().float().reshape(()))
        values = torch.stack(read).tolist()  # one host read per log
        logs = {"loss": values[0] / steps}
        self.window.warn_once(values[1])
        if self.grad_norm is not None:
            logs["grad_norm"] = values[2]
        # the rate the logged steps used (the last one's), as transformers logs it, not the next step's
        logs["learning_rate"] = float(self.step_lr) if self.step_lr is not None else trainer.current_learning_rate()
        self.last_logged_step = state.global_step
        trainer.log(logs, self.start_time)  # with tokens counted: num_input_tokens_seen, train_tokens_per_second


def counts_input_tokens(args) -> bool:
    """Whether the run counts its input tokens (``include_num_input_tokens_seen`` on)."""
    return args.include_num_input_tokens_seen not in (False, "no")


def count_input_tokens(model, inputs, mode):
    """Input tokens of one micro-batch: every position of the main input, or (``"non_padding"``)
    those its attention_mask keeps (a device tensor, summed without a sync)."""
    name = getattr(model, "main_input_name", "input_ids")
    if not isinstance(inputs, Mapping) or name not in inputs:
        keys = sorted(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
        raise ValueError(
            f"include_num_input_tokens_seen counts the tokens of the model's main input {name!r}, but the batch has "
            f"{keys}: set model.main_input_name to the batch key holding the tokens, or unset the option"
        )
    if mode == "non_padding" and "attention_mask" in inputs:
        return inputs["attention_mask"].sum()
    return inputs[name].numel()


def run_training(trainer: Trainer, batch_size: int) -> TrainOutput:
    """``Trainer._inner_training_loop``: size the run, restore a checkpoint, prepare model and optimizer
    through the engine, run the loop, then the end of training (best model, final log, hub push)."""
    args = trainer.args
    trainer._train_batch_size = batch_size
    if args.auto_find_batch_size and not trainer._user_optimizer:
        trainer.optimizer = trainer.lr_scheduler = None  # a retry at a smaller batch starts clean
    trainer._flos_params = None
    loop = TrainingLoop(trainer, batch_size)
    train_dataloader = trainer.get_train_dataloader()
    loop.plan(train_dataloader)
    if loop.batches_per_epoch == 0:
        raise ValueError(
            f"the training dataloader has no batch: {trainer.num_examples(train_dataloader)} samples, batch size "
            f"{batch_size}, dataloader_drop_last={args.dataloader_drop_last}"
        )
    rt = trainer.runtime
    checkpointer = trainer.checkpointer
    checkpointer.attach_loop(loop_parts(loop))
    # the whole checkpoint is read (and the weights loaded) before anything else changes
    checkpoint = checkpointer.read(trainer._resume_path) if trainer._resume_path is not None else None
    if checkpoint is not None:
        checkpointer.restore_weights(checkpoint)  # before the engine wraps the model
    trainer.state = loop.new_state()
    if trainer._search is not None:
        trainer._search.mark_state(trainer.state)
    trainer.control = TrainerControl()
    trainer.last_saved_step = None
    config = getattr(trainer.model, "config", None)
    if config is not None and hasattr(config, "use_cache"):  # as transformers does: no key-value cache in training
        config.use_cache = args.use_cache
    keep_quantized_weights_trainable(trainer.model)
    if args.use_liger_kernel:
        apply_liger_kernel(trainer.model, args.liger_kernel_config)
    if args.gradient_checkpointing:
        enable_activation_checkpointing(trainer.model, args.gradient_checkpointing_kwargs)
    trainer.model = rt.strategy.shard(trainer.model)  # FSDP: parameters sharded before the optimizer sees them
    trainer.create_optimizer()
    model, trainer.optimizer, trainer.lr_scheduler = rt.prepare_training(
        trainer.model, trainer.optimizer, lambda optimizer: trainer.create_scheduler(loop.max_steps, optimizer),
        loop.max_steps, num_warmup_steps(args, loop.max_steps),
    )
    trainer.model_wrapped = model
    set_optimizer_mode(trainer.optimizer, training=True)  # a schedule-free optimizer trains in its train mode
    if checkpoint is not None:
        checkpointer.restore(checkpoint)  # every registered part, the loop's included
        set_optimizer_mode(trainer.optimizer, training=True)  # its state was saved in eval mode
        loop.resume_path = checkpoint.path
        loop.complete = checkpoint.stopped_by_a_callback or trainer.state.global_step >= loop.max_steps
        if loop.complete:  # re-running a finished run (resume_from_checkpoint="auto") must not train on
            why = f"reached max_steps={loop.max_steps}" if trainer.state.global_step >= loop.max_steps else \
                "was stopped by a callback"
            logger.warning("%s is the end of a finished run (it %s at step %d): no step is taken, the checkpoints "
                           "stay as they are", checkpoint.path, why, trainer.state.global_step)
    if args.torch_compile:
        model = torch.compile(model, backend=args.torch_compile_backend, mode=args.torch_compile_mode)
        trainer.model_wrapped = model
    handler = trainer.callback_handler
    handler.model, handler.optimizer, handler.lr_scheduler = trainer.model, trainer.optimizer, trainer.lr_scheduler
    handler.train_dataloader = train_dataloader

    logger.info(
        "Training: %s samples/epoch, %s epochs, batch %s per device x %s accumulation x %s processes, %s steps",
        trainer.num_examples(train_dataloader) if has_length(train_dataloader) else "?",
        loop.num_epochs,
        batch_size,
        args.gradient_accumulation_steps,
        trainer.runtime.num_processes,
        loop.max_steps,
    )
    trainer._loop = loop
    metrics = loop.run(train_dataloader)
    set_optimizer_mode(trainer.optimizer, training=False)  # the model a schedule-free run ends with: the average
    trainer.checkpoint_writer.wait()  # save_async: the last checkpoint is on disk before train() goes on
    if args.load_best_model_at_end and not loop.preempted and trainer.state.best_model_checkpoint is not None:
        trainer.runtime.wait_for_everyone()
        logger.info("Loading the best model from %s (%s=%s)", trainer.state.best_model_checkpoint,
                    args.metric_for_best_model, trainer.state.best_metric)
        trainer._load_trained_weights(trainer.state.best_model_checkpoint)
    metrics["epoch"] = trainer.state.epoch
    trainer._memory_tracker.stop_and_update("train", metrics)
    trainer.log(metrics)
    loop.fire("on_train_end")
    trainer.publisher.training_ended()
    if loop.preempted:
        logger.warning("Training stopped by a preemption signal at step %d; checkpoint %s is complete. Exiting.",
                       trainer.state.global_step, ckpt.checkpoint_dir(args.output_dir, trainer.state.global_step))
        raise SystemExit(0)
    return TrainOutput(trainer.state.global_step, metrics["train_loss"], metrics)
