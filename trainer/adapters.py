"""PEFT adapters (LoRA and the other peft methods): a model wrapped by ``peft.get_peft_model`` saves only its
adapters, as ``adapter_model.safetensors`` + ``adapter_config.json`` (an adapter other than ``default`` in a
folder of its name, as peft writes them), and its checkpoints resume by loading those adapters back into the
wrapped model: the frozen base weights are the model's own and are never written.

peft is imported only when such a model is met.
"""

from __future__ import annotations

import os

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"


def is_peft_model(model) -> bool:
    """A ``peft.PeftModel`` (or one of its task subclasses), found by class name so that peft is not imported."""
    return any(klass.__name__ == "PeftModel" and klass.__module__.startswith("peft")
               for klass in type(model).__mro__)


def adapter_folder(directory: str, adapter_name: str) -> str:
    """Where peft's ``save_pretrained`` writes adapter ``adapter_name`` inside ``directory``."""
    return directory if adapter_name == "default" else os.path.join(directory, adapter_name)


def has_adapter_files(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, ADAPTER_WEIGHTS_NAME))


def load_adapters(model, directory: str) -> None:
    """Every adapter of the peft ``model`` from the files its ``save_pretrained`` wrote in ``directory``, exactly
    (safetensors; no pickle). Raises ValueError naming the adapter whose file is missing or does not fit."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for name in model.peft_config:
        path = os.path.join(adapter_folder(directory, name), ADAPTER_WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise ValueError(f"{directory} holds no {ADAPTER_WEIGHTS_NAME} for adapter {name!r} (looked for {path}); "
                             f"the model has the adapters {sorted(model.peft_config)}")
        try:
            state = load_file(path)
        except SafetensorError as e:
            raise ValueError(f"{path} is damaged or truncated ({e}): adapter {name!r} cannot be read") from e
        result = set_peft_model_state_dict(model, state, adapter_name=name)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"the adapter weights in {path} do not fit adapter {name!r} of {type(model).__name__}: "
                             f"unexpected keys {sorted(unexpected)}")


def keep_quantized_weights_trainable(model) -> None:
    """bitsandbytes (0.50) repacks a 4-bit weight for CPU inference at its first evaluation forward (rounding its
    scales to bfloat16) and cannot train it afterwards: the next training forward fails in place (transformers'
    Trainer fails there too). The Trainer keeps its evaluations from repacking (called when it is given the model);
    a weight repacked before that is unpacked (its scales stay rounded)."""
    if not getattr(model, "is_quantized", False):  # a PEFT model answers for its base
        return
    for module in model.modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        module.support_avx512bf16_for_cpu = False
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
