"""The devices and processes fields of ``TrainingArguments`` (``DeviceArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..argument_checks import DDP_BACKENDS
from . import _help


@dataclass
class DeviceArguments:
    """Devices and processes: the device, mixed precision, the process group, and the engines that shard
    training."""

    fp16: bool = field(default=False, metadata=_help("float16 mixed precision with a gradient scaler."))
    bf16: bool = field(default=False, metadata=_help("bfloat16 mixed precision."))
    fp16_full_eval: bool = field(default=False, metadata=_help("Evaluate with the model cast to float16."))
    bf16_full_eval: bool = field(default=False, metadata=_help("Evaluate with the model cast to bfloat16."))
    tf32: bool | None = field(
        default=None, metadata=_help("Allow TF32 matmuls on Ampere or newer CUDA GPUs; None leaves torch's default.")
    )
    use_cpu: bool = field(default=False, metadata=_help("Train on the CPU even when a GPU is available."))
    local_rank: int = field(
        default=-1, metadata=_help("Rank of this process on its node; set by the launcher (LOCAL_RANK).")
    )
    ddp_backend: str | None = field(
        default=None,
        metadata=_help("torch.distributed backend; default nccl with CUDA, gloo on the CPU.", choices=DDP_BACKENDS),
    )
    ddp_timeout: int = field(default=1800, metadata=_help("Seconds a collective may wait before failing."))
    ddp_find_unused_parameters: bool | None = field(
        default=None,
        metadata=_help("DistributedDataParallel find_unused_parameters (for models whose forward skips parameters); "
                       "default False, or True with gradient checkpointing off and unused parameters present."),
    )
    ddp_bucket_cap_mb: int | None = field(
        default=None, metadata=_help("DistributedDataParallel gradient bucket size in MB; default torch's 25.")
    )
    ddp_broadcast_buffers: bool | None = field(
        default=None, metadata=_help("DistributedDataParallel broadcast_buffers (BatchNorm statistics); default True.")
    )
    deepspeed: dict | str | None = field(
        default=None,
        metadata=_help("DeepSpeed ZeRO: a JSON config file path or a dict; \"auto\" values are filled from these "
                       "arguments (see integrations/deepspeed.py and configs/ds_zero*.json)."),
    )
    sharded_ddp: list | str | None = field(
        default=None,
        metadata=_help("FairScale sharded DDP: 'simple' (OSS optimizer + ShardedDataParallel; CPU or GPU). "
                       "'zero_dp_2', 'zero_dp_3', 'offload' are FairScale's FSDP and need CUDA. FairScale is "
                       "archived: prefer fsdp='full_shard'."),
    )
    fsdp: list | str | None = field(
        default=None,
        metadata=_help("torch FSDP2: 'full_shard' or 'shard_grad_op', optionally with 'offload' "
                       "(e.g. 'full_shard offload')."),
    )
    fsdp_config: dict | str | None = field(
        default=None,
        metadata=_help("FSDP options as a dict or JSON file: transformer_layer_cls_to_wrap, min_num_params, "
                       "state_dict_type ('full' or 'sharded'), reshard_after_forward."),
    )
    ddp_static_graph: bool | None = field(
        default=None, metadata=_help("DistributedDataParallel static_graph; default torch's (False).")
    )
    accelerator_config: dict | str | None = field(
        default=None,
        metadata=_help("transformers' options for its accelerate integration (a dict or a JSON file). trainforge "
                       "builds its own dataloaders and sharding, so only the defaults are accepted; a value that "
                       "would change them is refused, naming it."),
    )
    parallelism_config: str | None = field(
        default=None,
        metadata=_help("accelerate's ParallelismConfig (tensor/context parallel): not supported here, where one "
                       "engine (DDP, DeepSpeed, FSDP2, FairScale) shards a run; setting it is refused."),
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata=_help("transformers 5's name of gradient_checkpointing: set (not None) it wins, then both hold the "
                       "same value. Under FSDP, fsdp_config={'activation_checkpointing': True} recomputes each "
                       "sharded unit without a second all-gather instead."),
    )
    activation_checkpointing_kwargs: dict | str | None = field(
        default=None, metadata=_help("transformers 5's name of gradient_checkpointing_kwargs (the same rule).")
    )
    use_liger_kernel: bool = field(
        default=False, metadata=_help("Patch Liger's Triton kernels into a transformers model at train() (CUDA GPUs "
                                      "only; refused without one). Needs pip install liger-kernel.")
    )
    liger_kernel_config: dict | str | None = field(
        default=None, metadata=_help("Options of the Liger kernels, e.g. {'rope': True, 'fused_linear_cross_entropy': "
                                     "True} (a dict or a JSON object string).")
    )
    eval_use_gather_object: bool = field(
        default=False,
        metadata=_help("Gather non-tensor predictions across processes: not supported; predictions must be "
                       "tensors (setting it is refused)."),
    )
    debug: str | list[str] = field(
        default="",
        metadata=_help("transformers' debug options ('underflow_overflow', 'tpu_metrics_debug'): not supported; "
                       "set nonfinite_loss='stop' to stop at the first nan/inf loss."),
    )
