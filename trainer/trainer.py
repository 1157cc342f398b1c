"""The Trainer: public API and the hooks users override.

The loops live in ``loops.py`` and ``eval_loop.py``, data in ``data.py``, optimizers in ``optim.py``,
checkpoints in ``checkpointing.py``, ``checkpoint.py`` and ``resume.py``, device/precision and the engine in
``runtime.py`` (docs/architecture.md is the map); this class wires them and keeps the Hugging Face names
(``get_train_dataloader``, ``create_optimizer``, ``compute_loss``, ``training_step``, ``prediction_step``,
``evaluation_loop``, ``log``...).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from callbacks import (
    CallbackHandler,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from integrations.reporting import default_callbacks

from . import checkpoint as ckpt
from .adapters import keep_quantized_weights_trainable
from .arguments import TrainingArguments
from .async_save import CheckpointWriter
from .checkpointing import Checkpointer, trainer_parts
from .data import (
    DataCollatorWithPadding,
    build_dataloader,
    check_dataset,
    default_data_collator,
    find_label_names,
    has_length,
    model_input_names,
    remove_unused_columns,
)
from .eval_loop import empty_dataset_message, evaluation_loop, prediction_step
from .faults import check_trainable, explain_training_error
from .kernels import check_liger_kernel
from .label_smoothing import label_smoother_for
from .loops import counts_input_tokens, run_training
from .loss import LossComputation, accepts_kwarg
from .metric_forms import metrics_form
from .optim import create_optimizer, get_scheduler, num_warmup_steps, steps_on_metric
from .outputs import EvalLoopOutput, PredictionOutput, TrainOutput
from .prediction_store import PAD_INDEX
from .publishing import Publisher
from .recompute import check_activation_checkpointing
from .results import format_metrics, write_results
from .resume import EarlierRun, prepare_output_dir, resolve_checkpoint, saved_train_batch_size
from .runtime import Runtime, configure_logging, set_seed
from .search import run_search
from .speed_memory import MemoryTracker, speed_metrics
from .trainer_api import TrainerApi

logger = logging.getLogger(__name__)


class Trainer(LossComputation, TrainerApi):
    """Train, evaluate and predict with a PyTorch model.

    Args:
        model: an ``nn.Module`` whose forward returns the loss first (a tensor, a tuple or a
            dict with ``loss``) when labels are given; or a ``transformers`` model.
        args: the :class:`TrainingArguments` (default: ``TrainingArguments()``).
        data_collator: builds batches; default: padding with the tokenizer when one is given,
            else :func:`default_data_collator`.
        train_dataset / eval_dataset: map-style or iterable datasets, ``datasets.Dataset``
            included (unused columns removed); ``eval_dataset`` may be a dict of several,
            evaluated in turn with metrics prefixed ``eval_{name}_``.
        processing_class (alias ``tokenizer``): saved with the model; used for padding.
        model_init: builds a fresh model at every ``train()`` (seeded first).
        compute_loss_func: ``(outputs, labels, num_items_in_batch=None) -> loss`` instead of the model's own loss;
            ``num_items_in_batch`` is the label-token count of the optimizer step (``trainer/loss.py``).
        compute_metrics: a function ``EvalPrediction -> dict``, an ``evaluate`` module (or
            ``evaluate.combine``) fed batch by batch, or with ``batch_eval_metrics=True`` a
            function ``(EvalPrediction, compute_result) -> dict`` called per batch (see ``metric_forms.py``).
        callbacks: extra callbacks (classes or instances).
        optimizers: ``(optimizer, scheduler)`` to use instead of the ones built from the args.
        optimizer_cls_and_kwargs: ``(optimizer class, keyword arguments)`` built over the Trainer's parameter
            groups (weight decay split) instead of ``args.optim``'s.
        preprocess_logits_for_metrics: ``(logits, labels) -> logits`` applied per batch before
            anything is kept (e.g. ``logits.argmax(-1)``: memory then grows with the predictions
            kept, not with the logits).
    """

    prediction_padding_index = PAD_INDEX  # fills the ragged dimension 1 of stored predictions

    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        processing_class=None,
        model_init: Callable[..., nn.Module] | None = None,
        compute_loss_func: Callable | None = None,
        compute_metrics: Callable | None = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
        optimizer_cls_and_kwargs: tuple[type, dict] | None = None,
        preprocess_logits_for_metrics: Callable | None = None,
        tokenizer=None,
    ):
        if args is None:
            args = TrainingArguments()
        if not isinstance(args, TrainingArguments):
            args = TrainingArguments.converted(args)  # transformers' own: converted with a warning
        args.validate()
        self.args = args
        self._memory_tracker = MemoryTracker(args.skip_memory_metrics)
        self._memory_tracker.start()  # what building the Trainer takes: reported with the first train/eval/predict
        self.runtime = Runtime(args)
        configure_logging(args, self.runtime)
        if processing_class is not None and tokenizer is not None and processing_class is not tokenizer:
            raise ValueError("processing_class and tokenizer were both given: pass only processing_class")
        self.processing_class = processing_class if processing_class is not None else tokenizer
        set_seed(args.seed, args.full_determinism)
        self.model_init = model_init
        if model is None:
            if model_init is None:
                raise ValueError("Trainer needs a model or a model_init function: pass model=... or model_init=...")
            model = self.call_model_init()
        elif model_init is not None:
            logger.warning("Trainer got both model and model_init: model_init builds the model at train().")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.model_wrapped = model
        keep_quantized_weights_trainable(model)
        if args.gradient_checkpointing:
            check_activation_checkpointing(model)  # here, not at train()
        check_liger_kernel(args)
        if data_collator is None:
            has_pad = self.processing_class is not None and hasattr(self.processing_class, "pad")
            data_collator = DataCollatorWithPadding(self.processing_class) if has_pad else default_data_collator
        self.data_collator = data_collator
        for argument, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            for one in dataset.values() if isinstance(dataset, dict) else [dataset]:
                check_dataset(one, argument)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.compute_metrics = compute_metrics
        metrics_form(compute_metrics, args.batch_eval_metrics, args.include_for_metrics)  # its errors, now
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self._check_eval_dataset()
        self.optimizer, self.lr_scheduler = optimizers
        if self.optimizer is None and self.lr_scheduler is not None:
            raise ValueError("optimizers=(None, scheduler): pass the optimizer the scheduler was built on too")
        if optimizer_cls_and_kwargs is not None and self.optimizer is not None:
            raise ValueError("optimizers=(optimizer, ...) and optimizer_cls_and_kwargs were both given: pass one")
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs  # (class, kwargs) built over the parameter groups
        self.compute_loss_func = compute_loss_func  # (outputs, labels, num_items_in_batch=...) -> loss
        self._user_optimizer = self.optimizer is not None
        self._resume_path = None
        self.last_saved_step = None
        self.label_names = args.label_names or find_label_names(model)
        self.label_smoother = label_smoother_for(args, self.model)
        self._compute_loss_takes_num_items = accepts_kwarg(self.compute_loss, "num_items_in_batch")
        self.current_gradient_accumulation_steps = args.gradient_accumulation_steps
        self._train_batch_size = args.train_batch_size
        self.is_in_train = False
        self._initial_num_input_tokens_seen = 0  # num_input_tokens_seen when this train() call began
        self._flos_params = None  # non-embedding parameter count, for floating_point_ops
        self._past = None  # outputs[past_index] of the last step, fed back as `mems` (past_index >= 0)
        self._preemption = None  # the signal handler while train() runs (an evaluation stops at its flag)
        self._earlier_run = EarlierRun()  # checkpoints an earlier run left in output_dir (resume.py)
        self._search = None  # the running hyperparameter_search's Search (trainer/search.py), else None

        self.callback_handler = CallbackHandler(
            default_callbacks(args) + list(callbacks or []),
            self.model,
            self.processing_class,
            self.optimizer,
            self.lr_scheduler,
        )
        self.checkpoint_writer = CheckpointWriter()  # save_async: the background thread writing checkpoints
        self.checkpointer = Checkpointer(self)  # saves and restores the run's parts (trainer/checkpointing.py)
        for part in trainer_parts(self):
            self.checkpointer.register(part)
        self.publisher = Publisher(self)  # the Hub repo, created now with push_to_hub (trainer/publishing.py)
        if args.should_save:  # made (and proved writable) now: callbacks may write there from on_init_end
            ckpt.check_output_dir(args.output_dir)
        self.state = TrainerState(
            is_local_process_zero=self.is_local_process_zero(), is_world_process_zero=self.is_world_process_zero()
        )
        self.control = TrainerControl()
        self.control = self.callback_handler.on_init_end(self.args, self.state, self.control)
        self._memory_tracker.stop_and_update("init", {})

    def __getstate__(self) -> dict:
        """Picklable (Ray Tune ships the Trainer to its workers): the runtime and the memory sampler are
        rebuilt on the other side, for the process they land in."""
        state = self.__dict__.copy()
        state.pop("runtime", None)
        state["_memory_tracker"] = None
        state["checkpoint_writer"] = None  # a thread does not travel
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.runtime = Runtime(self.args)
        self._memory_tracker = MemoryTracker(self.args.skip_memory_metrics)
        self.checkpoint_writer = CheckpointWriter()

    # -- callbacks ------------------------------------------------------------------------
    def add_callback(self, callback: type[TrainerCallback] | TrainerCallback) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback):
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback) -> None:
        self.callback_handler.remove_callback(callback)

    # -- processes ------------------------------------------------------------------------
    def is_world_process_zero(self) -> bool:
        return self.runtime.is_main_process

    def is_local_process_zero(self) -> bool:
        return self.runtime.is_local_main_process

    # -- model ----------------------------------------------------------------------------
    def call_model_init(self, trial=None) -> nn.Module:
        """``model_init(trial)`` when its one parameter is ``trial`` or required, else ``model_init()``: a
        model class whose arguments all have defaults (``model_init=MyModel``) is built with its defaults,
        not given the trial as its first argument."""
        params = list(inspect.signature(self.model_init).parameters.values())
        takes_trial = len(params) == 1 and (params[0].name == "trial" or params[0].default is inspect.Parameter.empty)
        model = self.model_init(trial) if takes_trial else self.model_init()
        if model is None:
            raise RuntimeError("model_init returned None: it must return a torch.nn.Module")
        return model

    def model_for_evaluation(self) -> nn.Module:
        """The model evaluation runs: the prepared one, cast for fp16/bf16_full_eval outside training."""
        if self.is_in_train or self.runtime.strategy.is_engine and self.model_wrapped is not self.model:
            return self.model_wrapped
        model = self.model_wrapped if self.model_wrapped is not self.model else self.runtime.prepare_model(self.model)
        self.model_wrapped = model
        if self.args.fp16_full_eval:
            model = model.to(dtype=torch.float16)
        elif self.args.bf16_full_eval:
            model = model.to(dtype=torch.bfloat16)
        return model

    # -- data -----------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, description: str):
        check_dataset(dataset, description)
        if self.args.remove_unused_columns:
            return remove_unused_columns(dataset, self.model, self.label_names, description)
        return dataset

    def _dataloader(self, dataset, batch_size: int, train: bool, description: str) -> DataLoader:
        dataset = self._prepare_dataset(dataset, description)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return build_dataloader(
            dataset,
            batch_size=batch_size,
            collate_fn=self.data_collator,
            args=self.args,
            train=train,
            epoch_seed=seed,
            num_replicas=self.runtime.num_processes,
            rank=self.runtime.process_index,
        )

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("train() needs a train_dataset: pass Trainer(train_dataset=...)")
        return self._dataloader(self.train_dataset, self._train_batch_size, True, "train_dataset")

    def get_eval_dataloader(self, eval_dataset: Dataset | str | None = None) -> DataLoader:
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluation needs an eval_dataset: pass Trainer(eval_dataset=...) or evaluate(dataset)")
        return self._dataloader(dataset, self.args.eval_batch_size, False, "eval_dataset")

    def get_test_dataloader(self, test_dataset: Dataset) -> DataLoader:
        return self._dataloader(test_dataset, self.args.eval_batch_size, False, "test_dataset")

    def _check_eval_dataset(self) -> None:
        if self.args.eval_strategy != "no" and self.eval_dataset is None:
            raise ValueError(
                f"eval_strategy={self.args.eval_strategy.value!r} evaluates during training, but the Trainer has no "
                "eval_dataset: pass Trainer(eval_dataset=...) or set eval_strategy='no'"
            )
        datasets = self.eval_dataset.values() if isinstance(self.eval_dataset, dict) else [self.eval_dataset]
        if self.args.eval_strategy != "no" and any(d is not None and has_length(d) and not len(d) for d in datasets):
            raise ValueError(empty_dataset_message("Evaluation"))

    # -- optimizer and scheduler ----------------------------------------------------------
    def create_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = create_optimizer(self.model, self.args, self.optimizer_cls_and_kwargs)
        self.optimizer = self.runtime.strategy.wrap_optimizer(self.optimizer)  # FairScale: OSS
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type,
                optimizer or self.optimizer,
                num_warmup_steps=num_warmup_steps(self.args, num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
            )
        return self.lr_scheduler

    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        self.create_optimizer()
        self.create_scheduler(num_training_steps, self.optimizer)

    def current_learning_rate(self) -> float:
        if self.lr_scheduler is not None and not steps_on_metric(self.lr_scheduler):
            return float(self.lr_scheduler.get_last_lr()[0])
        return float(self.optimizer.param_groups[0]["lr"])

    # -- training -------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs) -> TrainOutput:
        """Train; returns ``TrainOutput(global_step, training_loss, metrics)``.

        ``resume_from_checkpoint``: a checkpoint path, ``True`` (the newest complete checkpoint in
        output_dir) or ``"auto"`` (resume if there is one, else start); defaults to
        ``args.resume_from_checkpoint``. The resumed run continues bit-for-bit as if it had never
        stopped. On SIGTERM (SIGINT with ``save_on_interrupt``) training saves a checkpoint and the
        process exits with status 0.
        """
        if kwargs:
            raise TypeError(f"train() got unexpected keyword arguments: {sorted(kwargs)}")
        self.checkpoint_writer.wait()  # a save_async checkpoint of an earlier train() may still be writing
        if self._search is not None:  # a trial of hyperparameter_search: its values applied to the arguments
            self._search.begin_trial(trial)
        args = self.args
        args.validate()
        self._check_eval_dataset()
        if resume_from_checkpoint is None:
            resume_from_checkpoint = args.resume_from_checkpoint
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint not in ("auto",):
            from integrations.hub import download_last_checkpoint, looks_like_repo_id

            if looks_like_repo_id(resume_from_checkpoint):  # a Hub repo pushed with hub_strategy='checkpoint'
                resume_from_checkpoint = download_last_checkpoint(resume_from_checkpoint, args)
        ckpt.check_output_dir(args.output_dir)
        self._resume_path = resolve_checkpoint(resume_from_checkpoint, args.output_dir)
        self._earlier_run = prepare_output_dir(self) if self._resume_path is None else EarlierRun()
        if self._resume_path is not None and args.auto_find_batch_size:  # the size the interrupted run settled on
            self._train_batch_size = saved_train_batch_size(self._resume_path) or self._train_batch_size
        self.is_in_train = True
        self._memory_tracker.start()
        if self.model_init is not None:
            set_seed(args.seed, args.full_determinism)
            self.model = self.call_model_init(trial)
            self.model_wrapped = self.model
            self.callback_handler.model = self.model
            if not self._user_optimizer:
                self.optimizer = self.lr_scheduler = None
        elif not self._user_optimizer:
            self.optimizer = self.lr_scheduler = None  # a second train() starts a new schedule
        check_trainable(self.model)
        try:
            if args.auto_find_batch_size:
                from accelerate.utils import find_executable_batch_size

                start = self._train_batch_size
                run = find_executable_batch_size(self._inner_training_loop, starting_batch_size=start)
                output = run()
                if self._train_batch_size != start:
                    logger.warning("auto_find_batch_size: out of memory at batch size %d per device; trained with %d",
                                   start, self._train_batch_size)
            else:
                output = self._inner_training_loop(self._train_batch_size)
        except RuntimeError as error:  # torch.OutOfMemoryError and collective failures included
            explain_training_error(error, args, self.runtime, self._train_batch_size)
            raise
        finally:
            self.is_in_train = False
            self._memory_tracker.stop_and_update("train", {})  # no-op unless training raised
        return output

    def _inner_training_loop(self, batch_size: int) -> TrainOutput:
        """One training run at ``batch_size`` per device (``auto_find_batch_size`` retries it smaller)."""
        return run_training(self, batch_size)

    def _counts_flos(self) -> bool:
        """FLOPs are counted for models that take input_ids, or when a subclass overrides floating_point_ops."""
        return "input_ids" in model_input_names(self.model, []) or (
            type(self).floating_point_ops is not Trainer.floating_point_ops
        )

    def _load_trained_weights(self, path: str) -> None:
        """Weights of checkpoint ``path`` into the model being trained (sharded or not)."""
        ckpt.load_trained_weights(self, path)

    def floating_point_ops(self, inputs) -> float:
        """Training FLOPs of one batch: 6 x tokens (``input_ids``) x non-embedding parameters; 0 without tokens."""
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            return 0.0
        if self._flos_params is None:
            self._flos_params = sum(
                p.numel() for m in self.model.modules() if not isinstance(m, nn.Embedding)
                for p in m.parameters(recurse=False)
            )
        return 6.0 * inputs["input_ids"].numel() * self._flos_params

    # -- checkpoints ----------------------------------------------------------------------
    def save_training_checkpoint(self) -> str:
        """Write ``checkpoint-{global_step}`` atomically (``checkpointing.Checkpointer.save``), rotate, fire
        on_save; returns its path."""
        path = self.checkpointer.save()
        self.last_saved_step = self.state.global_step
        self.publisher.checkpoint_saved(path)
        self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        return path

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save weights (safetensors), the processing class and ``training_args.json`` (main process).

        With ``push_to_hub``, saving to ``output_dir`` also pushes the model (in the background).
        """
        push = self.args.push_to_hub and not _internal_call and output_dir in (None, self.args.output_dir)
        output_dir = output_dir or self.args.output_dir
        self._save_model_files(output_dir)
        if push:
            self.publisher.model_saved(output_dir)

    def _save_model_files(self, output_dir: str) -> None:
        ckpt.save_final_model(self, output_dir)

    def save_state(self) -> None:
        if self.is_world_process_zero():
            os.makedirs(self.args.output_dir, exist_ok=True)
            self.state.save_to_json(os.path.join(self.args.output_dir, ckpt.TRAINER_STATE_NAME))

    # -- logging --------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Record ``logs`` (with ``epoch`` and ``step``) in ``state.log_history``; fire on_log.

        As transformers' ``log``, it adds to ``logs`` itself: ``epoch``, and when input tokens are counted
        ``num_input_tokens_seen`` (all processes) plus, given the train() ``start_time``, ``train_runtime`` and
        ``train_tokens_per_second`` over this train() call's tokens.
        """
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        if counts_input_tokens(self.args):
            logs["num_input_tokens_seen"] = self.state.num_input_tokens_seen
            if start_time is not None:
                tokens = self.state.num_input_tokens_seen - self._initial_num_input_tokens_seen
                logs.update(speed_metrics("train", start_time, num_tokens=tokens))
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs=logs)

    def log_metrics(self, split: str, metrics: dict) -> None:
        """Print ``metrics`` as an aligned table (main process)."""
        if self.is_world_process_zero():
            print(format_metrics(split, metrics))

    def save_metrics(self, split: str, metrics: dict, combined: bool = True) -> None:
        """Write ``{split}_results.json`` (and merge into ``all_results.json``) in output_dir (main process)."""
        if self.is_world_process_zero():
            write_results(self.args.output_dir, split, metrics, combined)

    # -- collaborators: the Hub publisher and the hyperparameter search ------------------
    @property
    def hub(self):
        """The run's ``integrations.hub.HubPusher`` (main process, with push_to_hub), else None."""
        return self.publisher.hub

    @property
    def hub_push_failures(self) -> list[str]:
        return self.publisher.push_failures

    def model_card_text(self, **kwargs) -> str:
        """The model card (README.md) of this run; ``kwargs``: finetuned_from, dataset, tasks, language,
        license, tags, model_name (remembered for later cards)."""
        return self.publisher.model_card_text(**kwargs)

    def create_model_card(self, **kwargs) -> None:
        """Write the model card as ``output_dir/README.md`` (main process), with the run's curves drawn
        into ``training_curves.png`` and embedded when matplotlib is installed."""
        self.publisher.create_model_card(**kwargs)

    def push_to_hub(self, commit_message: str = "End of training", blocking: bool = True, **model_card_kwargs):
        """Save the model and its card to output_dir and push them to the Hub repo (``hub_model_id``);
        ``blocking=False`` returns the upload's Future. Returns the commit id; None on other processes."""
        return self.publisher.push_to_hub(commit_message, blocking, **model_card_kwargs)

    def hyperparameter_search(self, hp_space: Callable | None = None, compute_objective: Callable | None = None,
                              n_trials: int = 20, direction: str | list[str] = "minimize", backend: str | None = None,
                              hp_name: Callable | None = None, **kwargs):
        """Search hyperparameters with optuna (default when installed) or Ray Tune; returns a ``BestRun``
        (a list of them for several directions). Needs ``model_init``; see docs/hyperparameter_search.md.

        ``hp_space(trial) -> dict`` names TrainingArguments fields; ``compute_objective(metrics)`` defaults to
        the eval loss (or the sum of the metrics); ``direction``: "minimize", "maximize" or a list of them;
        ``kwargs`` go to the backend (optuna: ``sampler``, ``pruner``, ``storage``, ``study_name``, ``timeout``;
        Ray: ``scheduler``, ``search_alg``, ``resources_per_trial``...).
        """
        return run_search(self, hp_space, compute_objective, n_trials, direction, backend, hp_name, **kwargs)

    # -- evaluation and prediction --------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> dict:
        """Evaluate; returns ``{prefix}_loss``, the compute_metrics values and speed metrics.

        With a dict of eval datasets (and no ``eval_dataset`` argument) each is evaluated in turn
        and its metrics are prefixed ``{prefix}_{name}_``.
        """
        if eval_dataset is None and isinstance(self.eval_dataset, dict):
            metrics = {}
            for name, dataset in self.eval_dataset.items():
                metrics.update(self.evaluate(dataset, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        output, metrics = self._measured_loop(self.get_eval_dataloader(eval_dataset), "Evaluation", ignore_keys,
                                              metric_key_prefix)
        self.log(metrics)  # adds epoch (and num_input_tokens_seen) to the metrics returned, as transformers does
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        if not self.is_in_train:  # memory metrics are returned, not logged (as transformers does)
            self._memory_tracker.stop_and_update(metric_key_prefix, metrics)
        return metrics

    def predict(self, test_dataset: Dataset, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """Predictions, labels (when the dataset has them) and metrics over ``test_dataset``."""
        output, metrics = self._measured_loop(self.get_test_dataloader(test_dataset), "Prediction", ignore_keys,
                                              metric_key_prefix)
        if not self.is_in_train:
            self._memory_tracker.stop_and_update(metric_key_prefix, metrics)
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, metrics=metrics)
        return PredictionOutput(output.predictions, output.label_ids, metrics)

    def _measured_loop(self, dataloader, description: str, ignore_keys, prefix: str) -> tuple[EvalLoopOutput, dict]:
        """The evaluation loop plus speed metrics; outside training it starts the memory measurement, which
        the caller ends."""
        if not self.is_in_train:
            self._memory_tracker.start()
        start = time.time()
        output = self.evaluation_loop(dataloader, description, None, ignore_keys, prefix)
        metrics = dict(output.metrics)
        batches = len(dataloader) if has_length(dataloader) else None
        metrics.update(speed_metrics(prefix, start, output.num_samples, batches))
        return output, metrics

    def evaluation_loop(self, dataloader, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> EvalLoopOutput:
        return evaluation_loop(self, dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)

    def prediction_step(self, model: nn.Module, inputs, prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None):
        """``(loss, logits, labels)`` of one batch, without gradients (``eval_loop.prediction_step``)."""
        return prediction_step(self, model, inputs, prediction_loss_only, ignore_keys)
