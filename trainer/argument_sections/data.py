"""The data fields of ``TrainingArguments`` (``DataArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _help


@dataclass
class DataArguments:
    """Data: the dataloaders, the columns the model gets, batching by length."""

    dataloader_drop_last: bool = field(default=False, metadata=_help("Drop the last incomplete batch."))
    dataloader_num_workers: int = field(
        default=0, metadata=_help("Worker processes of the dataloaders; 0 loads in the main process.")
    )
    dataloader_pin_memory: bool = field(default=True, metadata=_help("Pin host memory of batches (CUDA only)."))
    dataloader_persistent_workers: bool = field(
        default=False, metadata=_help("Keep dataloader workers alive between epochs (needs dataloader_num_workers > 0).")
    )
    past_index: int = field(
        default=-1,
        metadata=_help("Index of the model output holding past state (mems) to feed back at the next step; -1: none."),
    )
    remove_unused_columns: bool = field(
        default=True,
        metadata=_help("Drop datasets.Dataset columns that the model's forward() does not accept."),
    )
    label_names: list[str] | None = field(
        default=None,
        metadata=_help("Input keys holding the labels; default ['labels'] (or the model's label arguments)."),
    )
    group_by_length: bool = field(
        default=False, metadata=_help("Batch training samples of similar length together (less padding).")
    )
    length_column_name: str = field(
        default="length", metadata=_help("Dataset column with precomputed lengths for group_by_length.")
    )
    train_sampling_strategy: str = field(
        default="random",
        metadata=_help("Order of the training samples: 'random' (shuffled per epoch from the data seed), "
                       "'sequential' (dataset order), or 'group_by_length' (as group_by_length=True).",
                       choices=["random", "sequential", "group_by_length"]),
    )
    dataloader_prefetch_factor: int | None = field(
        default=None, metadata=_help("Batches each dataloader worker loads ahead (needs dataloader_num_workers > 0).")
    )
    dataloader_multiprocessing_context: str | None = field(
        default=None,
        metadata=_help("Start method of the dataloader workers: 'fork', 'spawn' or 'forkserver'; default torch's.",
                       choices=["fork", "spawn", "forkserver"]),
    )
    dataloader_in_order: bool = field(
        default=True,
        metadata=_help("Yield batches in the order they were dispatched to the workers (False: as soon as ready; "
                       "the order then depends on timing, so a run is not reproducible)."),
    )
