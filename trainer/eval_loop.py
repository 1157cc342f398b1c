"""The evaluation loop behind ``evaluate()`` and ``predict()``.

Per batch: ``prediction_step`` -> ``preprocess_logits_for_metrics`` (so only what it returns is
kept) -> gather across processes -> stored on the host (``PredictionStore``, numpy buffers
preallocated for the dataset) and/or streamed into the metrics (``metric_forms.py``) ->
``on_prediction_step``. The loss is summed on the device and synced once at the end.

Predictions are kept only when something reads them: ``predict()``, or a ``compute_metrics``
function of the whole ``EvalPrediction``. An ``evaluate`` module, a ``batch_eval_metrics``
function or no ``compute_metrics`` at all make ``evaluate()`` keep nothing but the loss.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch

from .data import has_length
from .faults import call_model
from .metric_forms import denumpify, metrics_form, prefix_metrics
from .nested import batch_size_of, nested_detach, nested_leaves, nested_map
from .outputs import EvalLoopOutput, EvalPrediction
from .prediction_store import PAD_INDEX, PredictionStore
from .preemption import EvaluationInterrupted, stop_requested

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

logger = logging.getLogger("trainer")


def evaluation_loop(
    trainer: Trainer,
    dataloader,
    description: str,
    prediction_loss_only: bool | None = None,
    ignore_keys: list[str] | None = None,
    metric_key_prefix: str = "eval",
) -> EvalLoopOutput:
    """Run the model over ``dataloader``; gather losses, predictions and labels; compute metrics. A transformers
    model's ``config.use_cache`` is ``args.use_cache`` (False by default) meanwhile, as in training: scoring needs
    no key-value cache, and without one a packed batch (``position_ids`` restarting, no attention mask) gets
    attention that stays within each sequence."""
    config = getattr(trainer.model, "config", None)
    if config is None or not hasattr(config, "use_cache"):
        return _evaluation_loop(trainer, dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
    before, config.use_cache = config.use_cache, trainer.args.use_cache
    try:
        return _evaluation_loop(trainer, dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
    finally:
        config.use_cache = before


def _evaluation_loop(trainer: Trainer, dataloader, description: str, prediction_loss_only: bool | None,
                     ignore_keys: list[str] | None, metric_key_prefix: str) -> EvalLoopOutput:
    args, rt = trainer.args, trainer.runtime
    handler = trainer.callback_handler
    loss_only = args.prediction_loss_only if prediction_loss_only is None else prediction_loss_only
    model = trainer.model_for_evaluation()
    model.eval()
    trainer._past = None
    handler.eval_dataloader = dataloader
    include = set(args.include_for_metrics)

    dataset = getattr(dataloader, "dataset", None)
    known_samples = len(dataset) if dataset is not None and has_length(dataset) else None
    if known_samples == 0:
        raise ValueError(empty_dataset_message(description))
    sampler = getattr(dataloader, "sampler", None)
    real_count = getattr(sampler, "real_count", None)  # padded distributed eval
    capacity = len(sampler) * rt.num_processes if real_count is not None else known_samples
    form = metrics_form(trainer.compute_metrics, args.batch_eval_metrics, args.include_for_metrics)
    form.start(known_samples)
    keep = not loss_only and (description == "Prediction" or form.keeps_predictions)
    stream = not loss_only and not form.keeps_predictions

    def store(padding_index: int = PAD_INDEX) -> PredictionStore:
        return PredictionStore(args.eval_accumulation_steps, rt.device, padding_index, capacity,
                               args.eval_do_concat_batches)

    pred_pad = trainer.prediction_padding_index
    preds, labels, inputs_kept, losses = store(pred_pad), store(), store(), store()
    loss_sum = torch.zeros((), device=rt.device, dtype=torch.float64)  # this rank's, gathered once at the end
    loss_count = 0
    observed = 0
    seen = _Seen()  # what the batches and outputs held, to say why an evaluation has no metric
    # A sharded model's forward is a collective: when one rank runs an extra forward, every rank must.
    lockstep_step = sampler.partial_batch_index() if real_count is not None and rt.strategy.collective_forward else None
    for step, inputs, last in _with_last(dataloader):
        batch_size = batch_size_of(inputs)
        observed += batch_size
        loss, logits, batch_labels = trainer.prediction_step(model, inputs, loss_only, ignore_keys=ignore_keys)
        seen.batch(inputs, loss, batch_labels, logits)
        if loss is not None:
            real = real_count(step) if real_count is not None else batch_size
            counted = inputs
            if 0 < real < batch_size:  # the batch ends in padding: take the loss of its real samples only
                counted = _slice_batch(inputs, real)
                loss = trainer.prediction_step(model, counted, True, ignore_keys=ignore_keys)[0]
            elif step == lockstep_step:  # another rank re-runs its partial batch: join the collectives
                trainer.prediction_step(model, inputs, True, ignore_keys=ignore_keys)
            # a token-mean loss (a transformers model's) weighs by its label tokens: eval_loss is the mean over
            # every label token of the dataset, with padding or packing alike; other losses weigh by samples
            tokens = trainer.label_tokens_of(counted)
            weight = tokens.double() if tokens is not None else real
            loss_sum = loss_sum + loss.detach().double().reshape(()) * weight
            loss_count = loss_count + weight
        if keep or stream:
            if logits is not None and trainer.preprocess_logits_for_metrics is not None:
                logits = trainer.preprocess_logits_for_metrics(logits, batch_labels)
            logits = _gather_padded(rt, logits, pred_pad)
            batch_labels = _gather_padded(rt, batch_labels)
            main_input = _main_input(trainer.model, inputs, trainer.label_names) if "inputs" in include else None
            main_input = _gather_padded(rt, main_input.to(rt.device)) if main_input is not None else None
            batch_losses = None
            if "loss" in include and loss is not None:
                batch_losses = rt.gather(loss.detach().float().reshape(1).expand(batch_size).contiguous())
            if keep:
                preds.add(logits)
                labels.add(batch_labels)
                inputs_kept.add(main_input)
                losses.add(batch_losses)
            if stream:
                form.add_batch(logits, batch_labels, main_input, batch_losses, last)
        trainer.control = handler.on_prediction_step(args, trainer.state, trainer.control)
        if stop_requested(trainer):  # only while train() runs: a preemption signal came; stop here
            raise EvaluationInterrupted(f"evaluation stopped by a preemption signal after {step + 1} batches")

    trainer._past = None
    if observed == 0 and not rt.distributed:
        raise ValueError(empty_dataset_message(description))
    num_samples = known_samples if known_samples is not None else observed * rt.num_processes
    all_preds = preds.result(num_samples)
    all_labels = labels.result(num_samples)
    all_inputs = inputs_kept.result(num_samples)
    all_losses = losses.result(num_samples)

    metrics = {}
    if not loss_only:
        eval_pred = None
        if form.keeps_predictions and all_preds is not None and all_labels is not None:
            eval_pred = EvalPrediction(all_preds, all_labels, all_inputs, all_losses)
        metrics = denumpify(form.compute(eval_pred))
    totals = torch.stack([loss_sum, torch.as_tensor(loss_count, dtype=torch.float64).to(rt.device).reshape(())])
    totals = rt.gather(totals.reshape(1, 2)).sum(0)  # one collective per evaluation, on every rank
    if totals[1].item() > 0:
        metrics["loss"] = (totals[0] / totals[1]).item()
    if description == "Evaluation":
        seen.explain(trainer, expects_metrics=not loss_only and trainer.compute_metrics is not None)
    metrics = prefix_metrics(metrics, metric_key_prefix)
    return EvalLoopOutput(predictions=all_preds, label_ids=all_labels, metrics=metrics, num_samples=num_samples)


def empty_dataset_message(description: str) -> str:
    argument, call = ("eval_dataset", "evaluate()") if description == "Evaluation" else ("test_dataset", "predict()")
    return (f"{call} got an empty {argument} (0 samples): there is nothing to evaluate; pass a dataset with samples"
            + (" or set eval_strategy='no'" if argument == "eval_dataset" else ""))


class _Seen:
    """What an evaluation's batches and outputs held, so that an evaluation that ends without an
    ``eval_loss`` or without its ``compute_metrics`` values says why instead of returning less."""

    def __init__(self):
        self.keys: list[str] | None = None  # the first batch's keys (Mapping batches only)
        self.labelled = False  # some batch held every one of label_names
        self.predicted = False  # the model returned predictions for some batch

    def batch(self, inputs, loss, labels, logits) -> None:
        if self.keys is None and isinstance(inputs, Mapping):
            self.keys = sorted(inputs)
        self.labelled = self.labelled or labels is not None or loss is not None
        self.predicted = self.predicted or logits is not None

    def explain(self, trainer: Trainer, expects_metrics: bool) -> None:
        """Warn (once per Trainer and cause) when the metrics miss what the evaluation should give."""
        if self.keys is not None and not self.labelled:
            names = trainer.label_names
            missing = [k for k in names if k not in self.keys]
            message = (f"evaluate() found no labels: the batches lack {missing} of label_names={names} (batch keys "
                       f"{self.keys}), so there is no eval_loss and compute_metrics is not called; set "
                       "TrainingArguments(label_names=[...]) to the key(s) that hold the labels")
        elif expects_metrics and self.labelled and not self.predicted:
            message = ("evaluate() got no predictions from the model, only its loss, so compute_metrics is not "
                       "called: make forward() return logits beside the loss (and check that ignore_keys does not "
                       "drop them)")
        else:
            return
        warned = trainer.__dict__.setdefault("_eval_warnings", set())
        if message not in warned:
            warned.add(message)
            logger.warning(message)


# Outputs that are never predictions: the key-value cache of generative models. transformers names it
# ``past_key_values`` (and ``cache`` in a few models); its configs used to list it in
# ``keys_to_ignore_at_inference``, which transformers 5.25 dropped from most of them.
DEFAULT_IGNORE_KEYS = ("past_key_values", "cache")


def inference_ignore_keys(model) -> list[str]:
    """The output keys ``prediction_step`` drops when the caller passes no ``ignore_keys``: the model
    config's ``keys_to_ignore_at_inference`` when it declares one, else the cache keys above."""
    config = getattr(model, "config", None)
    keys = getattr(config, "keys_to_ignore_at_inference", None) if config is not None else None
    return list(keys) if keys is not None else list(DEFAULT_IGNORE_KEYS)


def is_prediction(value) -> bool:
    """A tensor, or a list/tuple/dict whose leaves are all tensors: what evaluation can gather and store.
    ``None`` and other objects (a ``Cache``, a string) are not."""
    leaves = nested_leaves(value)
    return bool(leaves) and all(isinstance(t, torch.Tensor) for t in leaves)


def strip_outputs(outputs, ignore_keys: list[str], drop_first: bool):
    """Model outputs as a tuple of predictions: without the loss, ``ignore_keys`` and any value that is
    not made of tensors (a cache object under a key nobody listed)."""
    if isinstance(outputs, torch.Tensor):
        return None if drop_first else outputs
    if isinstance(outputs, Mapping):
        kept = tuple(v for k, v in outputs.items() if k not in ignore_keys and k != "loss" and is_prediction(v))
        return kept or None
    kept = tuple(v for v in (outputs[1:] if drop_first else outputs) if is_prediction(v))
    return kept or None


def _with_last(dataloader) -> Iterator[tuple[int, object, bool]]:
    """``(step, batch, is_last_batch)``: one batch of lookahead, so the last is known for any dataloader."""
    iterator = iter(dataloader)
    current = next(iterator, _END)
    step = 0
    while current is not _END:
        following = next(iterator, _END)
        yield step, current, following is _END
        current = following
        step += 1


_END = object()


def _main_input(model, inputs, label_names: list[str]):
    """The input ``EvalPrediction.inputs`` carries: the model's ``main_input_name`` (``input_ids``...),
    else the first argument of its forward found in the batch."""
    if isinstance(inputs, Mapping):
        name = getattr(model, "main_input_name", "input_ids")
        if name in inputs:
            return inputs[name]
        try:
            params = list(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):
            params = []
        names = [p for p in params if p in inputs] + list(inputs)
        return next((inputs[n] for n in names if n not in label_names and isinstance(inputs[n], torch.Tensor)), None)
    if isinstance(inputs, (list, tuple)):
        return inputs[0]
    return inputs


def _slice_batch(inputs, n: int):
    """The first ``n`` samples of a batch (tensors sliced on dim 0, other values kept)."""
    return nested_map(lambda v: v[:n] if isinstance(v, torch.Tensor) and v.dim() > 0 else v, inputs)


def _gather_padded(rt, tensors, padding_index: int = PAD_INDEX):
    if tensors is None or not rt.distributed:
        return tensors
    return nested_map(
        lambda t: rt.gather(rt.pad_across_processes(t, dim=1, pad_index=padding_index) if t.dim() > 1 else t),
        tensors,
    )


def prediction_step(trainer: Trainer, model, inputs, prediction_loss_only: bool, ignore_keys: list[str] | None):
    """``Trainer.prediction_step``: the loss (when the batch has labels), the outputs that are predictions
    (``strip_outputs``: no loss, no ``ignore_keys``, nothing that is not made of tensors) and the labels."""
    inputs = trainer._prepare_inputs(inputs)
    is_dict = isinstance(inputs, Mapping)
    has_labels = is_dict and all(inputs.get(k) is not None for k in trainer.label_names)
    labels = None
    if has_labels:
        labels = tuple(inputs[k].detach() for k in trainer.label_names)
        labels = labels[0] if len(labels) == 1 else labels
    if ignore_keys is None:
        ignore_keys = inference_ignore_keys(trainer.model)
    with torch.no_grad():
        if has_labels or not is_dict:
            loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
            loss = loss.detach().float().mean() if loss is not None else None
            logits = strip_outputs(outputs, ignore_keys, drop_first=not isinstance(outputs, Mapping))
        else:
            loss = None
            outputs = call_model(model, inputs)
            logits = strip_outputs(outputs, ignore_keys, drop_first=False)
    if prediction_loss_only:
        return loss, None, None
    logits = nested_detach(logits)
    if isinstance(logits, (tuple, list)) and len(logits) == 1:
        logits = logits[0]
    return loss, logits, labels
