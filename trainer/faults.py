"""What a failed training run says: notes added to the exception that stopped it, and messages for a loss
that cannot be trained on. The exception keeps its type (callers may catch it); the note, printed under the
traceback, names the cause and the fix."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch


def collective_failed(error: BaseException) -> bool:
    """Whether ``error`` is a distributed collective failing (a peer died, or did not answer in time)."""
    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return any(s in text for s in ("Connection closed by peer", "Timed out", "timed out", "Connection reset"))


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def explain_training_error(error: BaseException, args, runtime, batch_size: int) -> None:
    """Add a note to ``error`` when it is a failed collective or out of memory."""
    if runtime.distributed and collective_failed(error):
        error.add_note(
            f"a collective of the distributed run failed on process {runtime.process_index}: another process died "
            f"or stopped answering (ddp_timeout={args.ddp_timeout} s). Its log has the cause; the checkpoints "
            "written before are intact"
        )
    elif is_out_of_memory(error):
        error.add_note(
            f"out of memory with a batch of {batch_size} per device (per_device_train_batch_size, "
            f"gradient_accumulation_steps={args.gradient_accumulation_steps}): lower the batch size and raise "
            "gradient_accumulation_steps, or set auto_find_batch_size=True to halve it until it fits"
        )


def call_model(model, inputs):
    """The model's forward on a batch: a dict as keyword arguments, a tensor as the one argument, a tuple
    or list as positional ones. A ``TypeError`` for an input forward() requires and the batch lacks
    becomes one that names it and the fix."""
    try:
        if isinstance(inputs, Mapping):
            return model(**inputs)
        return model(inputs) if isinstance(inputs, torch.Tensor) else model(*inputs)
    except TypeError as error:
        message = missing_inputs_message(model, inputs) if isinstance(inputs, Mapping) else None
        if message is None:
            raise
        raise TypeError(message) from error


def missing_inputs_message(model, inputs: Mapping) -> str | None:
    """Why forward() got too few inputs, when it requires some the batch does not hold; else None."""
    module = getattr(model, "module", model)  # DDP and the engines' wrappers hold the model
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [p.name for p in parameters if p.kind in kinds and p.default is p.empty and p.name not in inputs]
    if not missing:
        return None
    return (f"{type(module).__name__}.forward() requires {missing}, which the batch lacks (batch keys "
            f"{sorted(inputs)}): the default data collator drops fields that hold strings or None, and "
            "remove_unused_columns=True drops the columns forward() does not name; build those inputs as tensors "
            "in a data_collator of your own (Trainer(data_collator=...)), or give the parameter a default")


def check_trainable(model) -> None:
    """Refuse, before any step, a model the optimizer would have nothing to update in."""
    parameters = list(model.parameters())
    name = type(model).__name__
    if not parameters:
        raise ValueError(f"{name} has no parameters, so training has nothing to update: give the model layers "
                         "(nn.Linear, nn.Parameter...) registered as attributes of the module")
    if not any(p.requires_grad for p in parameters):
        raise ValueError(
            f"{name} has no trainable parameter: all {len(parameters)} have requires_grad=False (frozen); unfreeze "
            "those to train (param.requires_grad_(True)) or add an adapter (peft.get_peft_model(model, config))"
        )
    check_quantized(model)


def check_quantized(model) -> None:
    """A quantized model (bitsandbytes 4/8-bit...) trains through adapters only (QLoRA), as in transformers."""
    quantizer = getattr(model, "hf_quantizer", None)
    if not getattr(model, "is_quantized", False) or quantizer is None:
        return
    method = getattr(quantizer.quantization_config, "quant_method", "quantized")
    method = getattr(method, "value", method)
    has_adapter = hasattr(model, "peft_config") or getattr(model, "_hf_peft_config_loaded", False)
    if not has_adapter and not getattr(quantizer, "is_qat_trainable", False):
        raise ValueError(
            f"{type(model).__name__} is quantized ({method}) and has no adapter: its quantized weights cannot be "
            "trained. Attach LoRA adapters first (QLoRA): model = peft.get_peft_model(peft.prepare_model_for_kbit_"
            "training(model), peft.LoraConfig(...))"
        )
    if not getattr(quantizer, "is_trainable", True):
        raise ValueError(f"{type(model).__name__} is quantized with {method}, which transformers cannot train "
                         "through (not even with adapters): load it with bitsandbytes (BitsAndBytesConfig) instead")


def bad_loss_error(loss, inputs, label_names: list[str]) -> Exception:
    """The error for a training loss that is not a one-number tensor."""
    if not isinstance(loss, torch.Tensor):
        return TypeError(
            f"the training loss is a {type(loss).__name__} ({loss!r:.40}), not a tensor, so it has no gradient to "
            "train with: return the loss tensor itself from forward() or compute_loss, without .item() or float()"
        )
    return ValueError(not_scalar_loss_message(loss, inputs, label_names))


def not_scalar_loss_message(loss: torch.Tensor, inputs, label_names: list[str]) -> str:
    keys = sorted(inputs) if isinstance(inputs, Mapping) else None
    missing = [k for k in label_names if keys is not None and k not in keys]
    why = (f"the batch has no {missing} (label_names={label_names}; batch keys {keys}), so the model returned its "
           "predictions first, not a loss: add the label column to the dataset or set label_names"
           if missing else "the model returned it first, where the loss goes")
    return (f"the training loss has shape {tuple(loss.shape)}, not a single number: {why}; or reduce it "
            "(.mean()) in the model or in an overridden Trainer.compute_loss")


def no_loss_message(outputs, inputs, label_names: list[str]) -> str:
    """The error for a model whose outputs hold no loss: what it returned, what it got, and the fix."""
    given = sorted(inputs) if isinstance(inputs, Mapping) else f"{len(inputs)} positional tensors"
    labelled = isinstance(inputs, Mapping) and any(k in inputs for k in label_names)
    fix = ("make forward() return the loss when it gets labels (first, or under 'loss' in a dict), set "
           "label_names if the model takes its labels under another name, or override "
           "Trainer.compute_loss") if labelled else (
           f"pass labels in the batch under {label_names} (or set label_names to the column that "
           "holds them), or override Trainer.compute_loss")
    return f"the model returned no loss (its outputs: {sorted(outputs)}; its inputs: {given}): {fix}"
