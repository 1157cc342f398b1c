"""Activation checkpointing (``gradient_checkpointing``, transformers 5's ``activation_checkpointing``): the
model's own switch recomputes its layers' activations in backward instead of keeping them.

``gradient_checkpointing_kwargs`` go to ``torch.utils.checkpoint`` (``use_reentrant=False`` unless given), except
transformers' two layer options, split off for ``activation_checkpointing_enable``: ``every_n_layers`` and
``offload``. FSDP's own recompute of each sharded unit is ``fsdp_config['activation_checkpointing']``
(integrations/fsdp.py).
"""

from __future__ import annotations


def check_activation_checkpointing(model) -> None:
    """Raise, naming the fix, when ``model`` has no activation checkpointing switch."""
    if not (hasattr(model, "activation_checkpointing_enable") or hasattr(model, "gradient_checkpointing_enable")):
        raise ValueError(
            f"gradient_checkpointing=True needs a model with activation_checkpointing_enable() or "
            f"gradient_checkpointing_enable() (a transformers model); {type(model).__name__} has neither: call "
            "torch.utils.checkpoint.checkpoint on its blocks in forward, or under FSDP set "
            "fsdp_config={'activation_checkpointing': True}, and unset gradient_checkpointing"
        )


def enable_activation_checkpointing(model, kwargs: dict | None) -> None:
    check_activation_checkpointing(model)  # a model_init's model is checked here
    options = dict(kwargs or {})
    layer_options = {name: options.pop(name) for name in ("every_n_layers", "offload") if name in options}
    checkpoint_kwargs = options or {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.25's name (a PEFT model forwards it)
        model.activation_checkpointing_enable(checkpoint_kwargs, **layer_options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs, **layer_options)
