"""``trainforge env``: versions and what is usable on this machine, to paste into a bug report."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform

PACKAGES = ("trainforge", "torch", "accelerate", "transformers", "tokenizers", "datasets", "torchdata", "safetensors",
            "evaluate", "huggingface_hub", "deepspeed", "fairscale", "tensorboard", "wandb", "mlflow", "optuna", "ray",
            "matplotlib")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _deepspeed_ops() -> str:
    if importlib.util.find_spec("deepspeed") is None:
        return "deepspeed not installed"
    try:
        from deepspeed.ops.op_builder import CPUAdamBuilder, FusedAdamBuilder

        ops = {"cpu_adam": CPUAdamBuilder().is_compatible(verbose=False),
               "fused_adam": FusedAdamBuilder().is_compatible(verbose=False)}
    except Exception as err:  # a broken install is worth reporting, not crashing on
        return f"unknown ({type(err).__name__}: {err})"
    return ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in ops.items())


def environment_report(deepspeed_ops: bool = False) -> list[tuple[str, str]]:
    """``(label, value)`` rows: platform, package versions, devices, distributed backends, integrations.
    ``deepspeed_ops`` probes DeepSpeed's compiled ops, which imports DeepSpeed (a second or more): the
    plain report stays well under 1.5 s and leaves DeepSpeed unimported."""
    import torch
    import torch.distributed as dist

    from integrations.hpo import HPO_BACKENDS, is_installed
    from integrations.reporting import resolve_report_to

    rows = [("python", f"{platform.python_version()} ({platform.platform()})"),
            ("cpu threads", f"{torch.get_num_threads()} of {os.cpu_count()}")]
    rows += [(name, _version(name)) for name in PACKAGES]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        rows.append(("cuda", f"{torch.version.cuda}: {len(names)} x {', '.join(sorted(set(names)))}"))
        rows.append(("bf16", "yes" if torch.cuda.is_bf16_supported() else "no (fp16 only)"))
    else:
        rows.append(("cuda", "no GPU (CPU runs; fp16/bf16 autocast on the CPU)"))
    mps = getattr(torch.backends, "mps", None)
    rows.append(("mps", "yes" if mps is not None and mps.is_available() else "no"))
    backends = [name for name, ok in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available()),
                                      ("mpi", dist.is_mpi_available())) if ok]
    rows.append(("distributed", ", ".join(backends) or "none"))
    if deepspeed_ops:
        rows.append(("deepspeed ops", _deepspeed_ops()))
    elif importlib.util.find_spec("deepspeed") is not None:
        rows.append(("deepspeed ops", "not probed (trainforge env --deepspeed-ops)"))
    rows.append(("report_to all", ", ".join(resolve_report_to("all")) or "none installed"))
    searches = [name for name, (module, _, _) in HPO_BACKENDS.items() if is_installed(module)]
    rows.append(("search backends", ", ".join(searches) or "none installed"))
    return rows


def format_report(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
