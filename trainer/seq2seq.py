"""``Seq2SeqTrainer``: evaluation and prediction by generation, for models with ``.generate``.

With ``predict_with_generate=True``, ``evaluate()`` and ``predict()`` return the generated token
ids (not logits) as predictions, so ``compute_metrics`` can decode them to text. The loss still
comes from a forward pass with the labels. Generated ids are padded with the model's
``pad_token_id``, within a batch by ``generate`` and across batches and processes by the
evaluation loop, so every row decodes with ``skip_special_tokens=True``; labels are padded
with -100 as in training (replace it with the pad id before decoding).

Generation settings, highest priority first: keyword arguments of ``evaluate()``/``predict()``
(``max_new_tokens=..., num_beams=...``), then ``generation_max_length`` / ``generation_num_beams``,
then ``generation_config`` (a ``GenerationConfig``, a dict, or a path / Hub id it is loaded
from), then the model's own ``generation_config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .arguments import TrainingArguments, _help
from .outputs import PredictionOutput
from .prediction_store import PAD_INDEX
from .trainer import Trainer

# decoder inputs are built by generate itself; labels only give the loss
_NOT_GENERATION_INPUTS = ("labels", "decoder_input_ids", "decoder_attention_mask")


@dataclass
class Seq2SeqTrainingArguments(TrainingArguments):
    """TrainingArguments plus the generation settings of evaluation and prediction."""

    sortish_sampler: bool = field(
        default=False,
        metadata=_help("Group training samples of similar length in each batch (less padding); same as "
                       "group_by_length=True."),
    )
    predict_with_generate: bool = field(
        default=False,
        metadata=_help("In evaluate/predict, generate with model.generate and return the generated ids as "
                       "predictions (for text metrics such as BLEU or ROUGE)."),
    )
    generation_max_length: int | None = field(
        default=None, metadata=_help("max_length of generate in evaluation/prediction; default: the model's.")
    )
    generation_num_beams: int | None = field(
        default=None, metadata=_help("num_beams of generate in evaluation/prediction; default: the model's.")
    )
    generation_config: Any = field(
        default=None,
        metadata=_help("A transformers GenerationConfig, a dict of its values, or a path (file or folder) or Hub "
                       "id to load it from; replaces the model's generation_config."),
    )

    def __post_init__(self) -> None:
        if self.sortish_sampler:
            self.group_by_length = True
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        for name in ("generation_max_length", "generation_num_beams"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name}={value!r} must be a whole number >= 1 (or None for the model's default)")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        config = out.get("generation_config")
        if config is not None and not isinstance(config, (str, dict)):
            out["generation_config"] = config.to_dict()
        return out


def load_generation_config(value):
    """A ``GenerationConfig`` from an instance, a dict, or a path / Hub id."""
    from transformers import GenerationConfig

    if isinstance(value, GenerationConfig):
        return value
    if isinstance(value, Mapping):
        return GenerationConfig(**value)
    if isinstance(value, str):
        import os

        if os.path.isfile(value):
            folder, name = os.path.split(value)
            return GenerationConfig.from_pretrained(folder or ".", config_file_name=name)
        return GenerationConfig.from_pretrained(value)  # a folder, or a Hub id for online users
    raise TypeError(
        f"generation_config must be a GenerationConfig, a dict or a path, got {type(value).__name__}"
    )


class Seq2SeqTrainer(Trainer):
    """A Trainer whose evaluation can generate (``Seq2SeqTrainingArguments.predict_with_generate``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._gen_kwargs: dict = {}
        config = getattr(self.args, "generation_config", None)
        if config is not None:
            if not hasattr(self.model, "generate"):
                raise ValueError(f"generation_config was given, but {type(self.model).__name__} has no generate()")
            self.model.generation_config = load_generation_config(config)
        if getattr(self.args, "predict_with_generate", False) and not hasattr(self.model, "generate"):
            raise ValueError(
                f"predict_with_generate=True, but {type(self.model).__name__} has no generate(): use a transformers "
                "model with a language-modeling head, or set predict_with_generate=False"
            )

    # -- evaluation and prediction with generation settings -------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval",
                 **gen_kwargs) -> dict:
        """As ``Trainer.evaluate``; ``gen_kwargs`` (``max_new_tokens``, ``num_beams``...) go to ``generate``."""
        self._use_generation_settings(gen_kwargs)
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset, ignore_keys: list[str] | None = None, metric_key_prefix: str = "test",
                **gen_kwargs) -> PredictionOutput:
        """As ``Trainer.predict``; with ``predict_with_generate`` the predictions are generated ids."""
        self._use_generation_settings(gen_kwargs)
        return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    def _use_generation_settings(self, gen_kwargs: dict) -> None:
        gen_kwargs = dict(gen_kwargs)
        if gen_kwargs.get("max_length") is None and gen_kwargs.get("max_new_tokens") is None:
            gen_kwargs["max_length"] = self.args.generation_max_length
        if gen_kwargs.get("num_beams") is None:
            gen_kwargs["num_beams"] = self.args.generation_num_beams
        self._gen_kwargs = {k: v for k, v in gen_kwargs.items() if v is not None}
        generating = self.args.predict_with_generate and not self.args.prediction_loss_only
        self.prediction_padding_index = self._pad_token_id() if generating else PAD_INDEX

    def _pad_token_id(self) -> int:
        for source in (getattr(self.model, "generation_config", None), getattr(self.model, "config", None),
                       self.processing_class):
            pad = getattr(source, "pad_token_id", None)
            if pad is not None:
                return int(pad)
        return PAD_INDEX

    def prediction_step(self, model: nn.Module, inputs, prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None, **gen_kwargs):
        """``(loss, generated_ids, labels)`` with ``predict_with_generate``; else as ``Trainer``'s."""
        if not self.args.predict_with_generate or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        has_labels = isinstance(inputs, Mapping) and "labels" in inputs
        loss = None
        if has_labels:
            loss = super().prediction_step(model, inputs, True, ignore_keys=ignore_keys)[0]
        gen_kwargs = {**self._gen_kwargs, **gen_kwargs}
        if self.runtime.strategy.collective_forward:  # ZeRO-3 / FSDP: every rank runs as many forwards
            gen_kwargs.setdefault("synced_gpus", True)
        generator = self.runtime.unwrap(model)
        generation_inputs = {k: v for k, v in inputs.items() if k not in _NOT_GENERATION_INPUTS}
        with torch.no_grad():
            generated = generator.generate(**generation_inputs, **gen_kwargs)
        config = getattr(generator, "config", None)
        if config is not None and not getattr(config, "is_encoder_decoder", False) and "input_ids" in inputs:
            generated = generated[:, inputs["input_ids"].shape[1]:]  # a decoder-only model repeats its prompt
        labels = inputs["labels"].detach() if has_labels else None
        return loss, generated, labels
