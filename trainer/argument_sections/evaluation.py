"""The evaluation fields of ``TrainingArguments`` (``EvaluationArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from callbacks.strategies import IntervalStrategy

from . import _help


@dataclass
class EvaluationArguments:
    """Evaluation: during and after training, its metrics, and the best model."""

    eval_strategy: str = field(
        default="no",
        metadata=_help("When to evaluate during training.", choices=IntervalStrategy.values()),
    )
    evaluation_strategy: str | None = field(
        default=None, metadata=_help("Old name of eval_strategy, accepted as an alias.")
    )
    eval_steps: float | None = field(
        default=None,
        metadata=_help(
            "Evaluate every N update steps with eval_strategy='steps'; a float < 1 is a fraction of the total "
            "steps. Defaults to logging_steps."
        ),
    )
    eval_delay: float = field(
        default=0,
        metadata=_help("Epochs (eval_strategy='epoch') or steps ('steps') to wait before the first evaluation."),
    )
    eval_on_start: bool = field(
        default=False,
        metadata=_help("Evaluate once before the first training step (a new run, not a resumed one): a sanity check "
                       "of the evaluation and compute_metrics before hours of training."),
    )
    prediction_loss_only: bool = field(
        default=False, metadata=_help("In evaluate/predict, return only the loss (no predictions or metrics).")
    )
    per_device_eval_batch_size: int = field(default=8, metadata=_help("Evaluation batch size per device."))
    eval_accumulation_steps: int | None = field(
        default=None,
        metadata=_help(
            "Move accumulated predictions to the CPU every N evaluation batches (saves device memory); "
            "None keeps them on the device until the end. On the CPU they are stored at every batch."
        ),
    )
    eval_do_concat_batches: bool = field(
        default=True,
        metadata=_help("Concatenate the predictions, labels and inputs of all batches into one array each; False "
                       "keeps a list with one array per batch (outputs whose shapes vary beyond dimension 1)."),
    )
    batch_eval_metrics: bool = field(
        default=False,
        metadata=_help("Call compute_metrics(eval_prediction, compute_result) at every batch instead of once with "
                       "every prediction: nothing is accumulated; compute_result=True at the last batch."),
    )
    include_for_metrics: list[str] = field(
        default_factory=list,
        metadata=_help("Extra fields for compute_metrics: 'inputs' (EvalPrediction.inputs, the main input) and/or "
                       "'loss' (EvalPrediction.losses, each sample's batch loss)."),
    )
    load_best_model_at_end: bool = field(
        default=False,
        metadata=_help("Load the best checkpoint (by metric_for_best_model) when training ends."),
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata=_help("Metric comparing checkpoints, e.g. 'eval_loss' or 'accuracy'; default 'loss' with "
                       "load_best_model_at_end."),
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata=_help("Whether a larger metric_for_best_model is better; default False for names ending in 'loss'."),
    )
    include_inputs_for_metrics: bool = field(
        default=False, metadata=_help("Old form of include_for_metrics=['inputs'], accepted as an alias.")
    )
