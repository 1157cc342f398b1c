"""Dataloaders, samplers and collators.

Training order depends only on ``(data_seed or seed, epoch)``: the samplers draw from their own
generator, never the global RNG, so the order is reproducible and a resumed run can rebuild it.
In distributed runs each rank takes its slice of the same permutation.
"""

from __future__ import annotations

import inspect
import logging
import math
import operator
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from .rng_streams import ALL, SeededBatch, data_key, global_streams_used

logger = logging.getLogger(__name__)
# torchdata 0.11 calls a deprecated torch API at every iterator creation
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


# -- collators ----------------------------------------------------------------------------
def _to_tensor(values: list) -> torch.Tensor:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(values))
    return torch.tensor(values)


def default_data_collator(features: list) -> Any:
    """Batch a list of samples.

    Dict samples become a dict of stacked tensors (a ``label``/``label_ids`` key is renamed
    ``labels``; strings and None are dropped); anything else goes to torch's default_collate.
    """
    first = features[0]
    if first is None or isinstance(first, (int, float, str, bytes)):
        raise TypeError(
            f"the default data collator got samples of type {type(first).__name__} ({first!r:.40}): it batches dicts "
            "of features (or tuples of tensors); make the dataset's __getitem__ return a dict such as "
            "{'input_ids': ..., 'labels': ...}, or pass Trainer(data_collator=...) to build the batch yourself"
        )
    if not isinstance(first, Mapping):
        return torch.utils.data.default_collate(features)
    batch = {}
    for key, value in first.items():
        if value is None or isinstance(value, str):
            continue
        name = "labels" if key in ("label", "label_ids") else key
        values = [f[key] for f in features]
        try:
            batch[name] = _to_tensor(values)
        except (ValueError, RuntimeError, TypeError) as e:
            raise ValueError(_unstackable_message(key, values)) from e
    if "labels" in batch and batch["labels"].dtype == torch.float64:
        batch["labels"] = batch["labels"].float()
    return batch


def _unstackable_message(key: str, values: list) -> str:
    lengths = [len(v) if hasattr(v, "__len__") else type(v).__name__ for v in values[:8]]
    return (f"the default data collator cannot make one tensor of the field {key!r}: its samples differ in length or "
            f"type (the first: {lengths}); pad them to one length, with data_collator=DataCollatorWithPadding("
            "tokenizer) (Trainer(processing_class=tokenizer) uses it) or in the dataset, or pass a data_collator of "
            "your own")


class DataCollatorWithPadding:
    """Pad the samples of a batch to a common length with the tokenizer's ``pad``."""

    def __init__(self, tokenizer, padding: bool | str = True, max_length: int | None = None,
                 pad_to_multiple_of: int | None = None):
        self.tokenizer = tokenizer
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        batch = self.tokenizer.pad(
            features,
            padding=self.padding,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        batch = dict(batch)
        for old in ("label", "label_ids"):
            if old in batch:
                batch["labels"] = batch.pop(old)
        return batch


# -- samplers -----------------------------------------------------------------------------
class EpochSeededSampler(Sampler[int]):
    """Random order from ``(seed, epoch)``; rank ``r`` of ``n`` takes every n-th index.

    The index list is padded by repeating its start so every rank gets the same count
    (dropped instead with ``drop_last``). Call ``set_epoch`` before each epoch.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True, num_replicas: int = 1,
                 rank: int = 0, drop_last: bool = False):
        self.dataset_len = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last:
            self.per_rank = num_samples // num_replicas
        else:
            self.per_rank = math.ceil(num_samples / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        return _shard(order, self.per_rank, self.num_replicas, self.rank)

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank


class EpochBatchSampler:
    """Whole batches sliced from a sampler's epoch order; the training data's position.

    Stateful (torchdata's protocol) at batch granularity: ``state_dict()`` is
    ``{"epoch", "batches_yielded"}``, read in O(1) from the running list iterator, and after
    ``load_state_dict`` the next iteration starts at that batch, so a resume costs the same at
    any position. Per batch it does one list slice, no per-sample Python work.
    """

    def __init__(self, sampler: EpochSeededSampler, batch_size: int, drop_last: bool):
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self._skip = 0  # batches to skip at the next iteration (set by load_state_dict)
        self.streams = ALL  # the global generators the main process seeds per batch (rng_streams.py)
        self._offset = 0
        self._iter = None
        self._iter_len = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.sampler.epoch:
            self._skip = 0
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        order, size = self.sampler.indices(), self.batch_size
        stop = len(order) - len(order) % size if self.drop_last else len(order)
        self._offset, self._skip = self._skip, 0
        batches = [order[i : i + size] for i in range(self._offset * size, stop, size)]
        self._iter_len = len(batches)
        self._iter = iter(batches)
        return self._seeded(self._iter, self._offset)

    def _seeded(self, batches, position: int):
        """Each batch as a ``SeededBatch`` keyed by ``(seed, epoch, position, rank)`` (``rng_streams.py``)."""
        sampler = self.sampler
        for batch in batches:
            yield SeededBatch(batch, data_key(sampler.seed, sampler.epoch, position, sampler.rank), self.streams)
            position += 1

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def state_dict(self) -> dict:
        if self._iter is None:
            return {"epoch": self.sampler.epoch, "batches_yielded": self._skip}
        done = self._offset + self._iter_len - operator.length_hint(self._iter)
        return {"epoch": self.sampler.epoch, "batches_yielded": done}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.set_epoch(int(state["epoch"]))
        self._skip = int(state["batches_yielded"])
        self._iter = None


def _shard(order: list[int], per_rank: int, num_replicas: int, rank: int) -> list[int]:
    total = per_rank * num_replicas
    if total > len(order):
        order = order + (order * math.ceil(total / len(order)))[: total - len(order)]
    return order[:total][rank::num_replicas]


class EvalShardSampler(Sampler[int]):
    """Sequential evaluation order split by whole batches: rank ``r`` takes batches r, r+n, r+2n...

    Gathering one batch from every rank then yields a contiguous slice of the dataset, so the
    gathered outputs are in dataset order. The order is padded (repeating its start) to a whole
    number of batches on every rank; the padding sits at the very end and is cut by truncating
    to ``len(dataset)``. ``real_count(k)`` tells how many samples of this rank's k-th batch are real.
    """

    def __init__(self, num_samples: int, batch_size: int, num_replicas: int, rank: int):
        self.dataset_len = num_samples
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.batches_per_rank = max(1, math.ceil(num_samples / (batch_size * num_replicas)))

    def __iter__(self):
        n, b = self.num_replicas, self.batch_size
        for k in range(self.batches_per_rank):
            start = (k * n + self.rank) * b
            yield from ((start + i) % self.dataset_len for i in range(b))

    def __len__(self) -> int:
        return self.batches_per_rank * self.batch_size

    def real_count(self, batch_index: int) -> int:
        start = (batch_index * self.num_replicas + self.rank) * self.batch_size
        return max(0, min(self.batch_size, self.dataset_len - start))

    def partial_batch_index(self) -> int | None:
        """The batch index at which some rank's batch is part real, part padding (None if no rank's is)."""
        if self.dataset_len % self.batch_size == 0:
            return None
        return (self.dataset_len // self.batch_size) // self.num_replicas


class LengthGroupedSampler(EpochSeededSampler):
    """Shuffle, then sort by length inside mega-batches of 50 batches so batches need little padding.

    The mega-batch holding the longest sample goes first, so an out-of-memory error shows at once.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0,
                 drop_last: bool = False):
        super().__init__(len(lengths), seed, True, num_replicas, rank, drop_last)
        self.lengths = lengths
        self.batch_size = batch_size

    def indices(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.dataset_len, generator=g).tolist()
        size = self.batch_size * self.num_replicas * 50
        megabatches = [
            sorted(order[i : i + size], key=lambda k: self.lengths[k], reverse=True)
            for i in range(0, len(order), size)
        ]
        longest = max(range(len(megabatches)), key=lambda i: self.lengths[megabatches[i][0]])
        megabatches[0], megabatches[longest] = megabatches[longest], megabatches[0]
        flat = [i for mb in megabatches for i in mb]
        return _shard(flat, self.per_rank, self.num_replicas, self.rank)


def sample_lengths(dataset, length_column_name: str) -> list[int]:
    """Lengths for group_by_length: the dataset's length column, else len(input_ids) per sample."""
    column_names = getattr(dataset, "column_names", None)
    if column_names and length_column_name in column_names:
        return list(dataset[length_column_name])
    lengths = []
    for i in range(len(dataset)):
        sample = dataset[i]
        if not isinstance(sample, Mapping) or "input_ids" not in sample:
            raise ValueError(
                "group_by_length=True needs samples with 'input_ids' or a dataset column named by "
                f"length_column_name={length_column_name!r}"
            )
        lengths.append(len(sample["input_ids"]))
    return lengths


class IterableDatasetShard(IterableDataset):
    """Rank ``r`` of ``n`` keeps the samples whose position modulo ``n`` is ``r``."""

    def __init__(self, dataset: IterableDataset, num_replicas: int, rank: int):
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self):
        for i, sample in enumerate(self.dataset):
            if i % self.num_replicas == self.rank:
                yield sample


# -- columns ------------------------------------------------------------------------------
def is_hf_dataset(dataset) -> bool:
    """A ``datasets.Dataset`` or ``datasets.IterableDataset``, recognized without importing datasets."""
    return type(dataset).__module__.startswith("datasets.") and hasattr(dataset, "column_names")


def model_input_names(model: torch.nn.Module, label_names: list[str]) -> set[str]:
    """Argument names of the model's forward(), plus the label names."""
    forward = getattr(model, "forward", model)
    params = inspect.signature(forward).parameters
    return set(params) | set(label_names) | {"label", "label_ids"}


def find_label_names(model: torch.nn.Module) -> list[str]:
    """Forward arguments that hold labels (``labels``, ``start_positions``...); default ['labels']."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return ["labels"]
    found = [p for p in params if "label" in p or p in ("start_positions", "end_positions")]
    return found or ["labels"]


def remove_unused_columns(dataset, model: torch.nn.Module, label_names: list[str], description: str):
    """Drop the columns of a datasets.Dataset that the model's forward() does not take."""
    if not is_hf_dataset(dataset) or dataset.column_names is None:
        return dataset
    accepted = model_input_names(model, label_names)
    unused = [c for c in dataset.column_names if c not in accepted]
    if unused:
        logger.info("%s: removing columns not accepted by the model's forward(): %s", description, unused)
    kept = [c for c in dataset.column_names if c in accepted]
    if not kept:
        raise ValueError(
            f"{description}: remove_unused_columns=True would remove every column: none of the dataset's columns "
            f"{dataset.column_names} is an argument of the model's forward() {sorted(accepted)}; rename the columns "
            "to the forward() arguments, or set remove_unused_columns=False and pass a data_collator that builds them"
        )
    return dataset.remove_columns(unused) if unused else dataset


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator for one sample's random augmentation, seeded from ``(seed, epoch, index)``.

    Randomness drawn from it is the same whichever process or worker loads the sample and
    whenever it is loaded, and does not depend on the batch size: for a dataset that keeps its own
    generators (the global ones are seeded per batch, ``rng_streams.py``), or an IterableDataset.
    The Trainer calls ``dataset.set_epoch(epoch)`` before each epoch when the dataset has it.
    """
    g = torch.Generator()
    g.manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**63))
    return g


# -- dataloaders --------------------------------------------------------------------------
def seed_worker(worker_id: int) -> None:
    """Seed python's ``random`` and numpy in a dataloader worker from its torch seed."""
    import random

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _stateful_dataloader_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchdata.stateful_dataloader import StatefulDataLoader
    return StatefulDataLoader


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    collate_fn,
    args,
    train: bool,
    epoch_seed: int,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader:
    """A DataLoader with the sampler the arguments ask for (shuffled only for training).

    Training data goes through torchdata's StatefulDataLoader, whose ``state_dict`` is saved in
    checkpoints. Every loader has its own generator (a training one is reseeded from
    ``(epoch_seed, epoch)`` by :func:`set_dataloader_epoch`), so creating an iterator never draws
    from the global RNG: an evaluation during training leaves the training's random streams as they
    were, and worker seeds depend on the epoch only.
    """
    common = {
        "batch_size": batch_size,
        "collate_fn": collate_fn,
        "num_workers": args.dataloader_num_workers,
        "pin_memory": args.dataloader_pin_memory and torch.cuda.is_available(),
        "persistent_workers": args.dataloader_persistent_workers,
        "drop_last": args.dataloader_drop_last and train,
    }
    if args.dataloader_num_workers:  # options of the worker processes
        common["prefetch_factor"] = args.dataloader_prefetch_factor
        common["multiprocessing_context"] = args.dataloader_multiprocessing_context
        common["in_order"] = args.dataloader_in_order
    loader_class = DataLoader
    generator = torch.Generator()
    generator.manual_seed(epoch_seed)
    common["generator"] = generator  # a DataLoader without one draws its base seed from the global RNG
    if train:
        loader_class = _stateful_dataloader_class()
        common["worker_init_fn"] = seed_worker
    if isinstance(dataset, IterableDataset):
        if num_replicas > 1:
            dataset = IterableDatasetShard(dataset, num_replicas, rank)
        return _tag(loader_class(dataset, **common), epoch_seed, batch_size * num_replicas)
    if train:
        if args.group_by_length:
            lengths = sample_lengths(dataset, args.length_column_name)
            sampler = LengthGroupedSampler(lengths, batch_size, epoch_seed, num_replicas, rank)
        else:
            sampler = EpochSeededSampler(len(dataset), epoch_seed, shuffle=args.train_sampling_strategy != "sequential",
                                         num_replicas=num_replicas, rank=rank)
        batches = EpochBatchSampler(sampler, batch_size, common.pop("drop_last"))
        if not common["num_workers"] and len(dataset):  # the main process fetches: seed what the data draws from
            batches.streams = global_streams_used(dataset)
        del common["batch_size"]
        return _tag(loader_class(dataset, batch_sampler=batches, **common), epoch_seed, batch_size * num_replicas)
    if num_replicas > 1:
        sampler = EvalShardSampler(len(dataset), batch_size, num_replicas, rank)
    else:
        sampler = EpochSeededSampler(len(dataset), epoch_seed, shuffle=False)
    return _tag(loader_class(dataset, sampler=sampler, **common), epoch_seed, batch_size * num_replicas)


def _tag(loader: DataLoader, epoch_seed: int, total_batch_size: int) -> DataLoader:
    loader.epoch_seed = epoch_seed
    loader.total_batch_size = total_batch_size  # over all processes, as accelerate's prepared loaders have it
    return loader


def set_dataloader_epoch(dataloader: DataLoader, epoch: int) -> None:
    """Tell the sampler (or iterable dataset) which epoch starts; reseed the loader's generator."""
    batch_sampler = getattr(dataloader, "batch_sampler", None)
    sampler = batch_sampler if hasattr(batch_sampler, "set_epoch") else getattr(dataloader, "sampler", None)
    for holder in (sampler, getattr(dataloader, "dataset", None)):
        if hasattr(holder, "set_epoch"):
            holder.set_epoch(epoch)
    generator = getattr(dataloader, "generator", None)
    if generator is not None and hasattr(dataloader, "epoch_seed"):
        generator.manual_seed(dataloader.epoch_seed + epoch)


def check_dataset(dataset, argument: str) -> None:
    """Refuse what cannot be a dataset of the Trainer, naming ``argument`` and the fix."""
    if isinstance(dataset, DataLoader):
        size, getter = (("per_device_train_batch_size", "get_train_dataloader") if argument == "train_dataset"
                        else ("per_device_eval_batch_size", "get_eval_dataloader"))
        raise TypeError(
            f"{argument} is a DataLoader, and the Trainer builds its dataloaders itself: pass its dataset "
            f"({argument}=loader.dataset) with {size}=loader.batch_size and Trainer(data_collator=loader.collate_fn), "
            f"or override Trainer.{getter} to return your loader"
        )


def close_workers(dataloader) -> None:
    """Stop the worker processes of the dataloader's iterator now, at the end of ``train()``.

    torchdata's StatefulDataLoader keeps its last iterator; left to the garbage collector, its workers are
    shut down with the loader in one cycle, in an order where they miss the stop message and each is
    waited for 5 s (a 10 s stall with two workers when the Trainer is freed, or at exit)."""
    iterator = getattr(dataloader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
        dataloader._iterator = None


def has_length(dataloader) -> bool:
    try:
        return len(dataloader) is not None
    except (TypeError, NotImplementedError):
        return False


def epoch_plan(args, dataloader) -> tuple[int | None, int | None, int, int]:
    """``(batches per epoch, optimizer steps per epoch, max_steps, epochs)`` of a training run over
    ``dataloader``; the first two are None for a dataloader without a length (``max_steps`` must be set), whose
    epochs are unbounded (``sys.maxsize``)."""
    accum = args.gradient_accumulation_steps
    if has_length(dataloader):
        batches = len(dataloader)
        updates = max(1, math.ceil(batches / accum))
        if args.max_steps > 0:
            return batches, updates, args.max_steps, math.ceil(args.max_steps / updates)
        return batches, updates, math.ceil(args.num_train_epochs * updates), math.ceil(args.num_train_epochs)
    if args.max_steps <= 0:
        raise ValueError(
            "the training dataset has no length (an IterableDataset), so the number of steps is unknown: "
            "set TrainingArguments(max_steps=N)"
        )
    return None, None, args.max_steps, sys.maxsize


class SkippedBatches:
    """``dataloader`` without its first ``num_batches`` batches, which are read and dropped (the default of
    ``Trainer.get_resumed_dataloader``, for a resume whose checkpoint has no dataloader state)."""

    def __init__(self, dataloader, num_batches: int):
        self.dataloader = dataloader
        self.num_batches = num_batches

    def __len__(self) -> int:
        return max(0, len(self.dataloader) - self.num_batches)

    def __iter__(self):
        iterator = iter(self.dataloader)
        for _ in range(self.num_batches):
            if next(iterator, None) is None:
                break
        return iterator


def to_device(inputs, device):
    """A batch (a mapping, a list/tuple or a tensor) with its tensors on ``device``; as it is on the CPU."""
    if device.type == "cpu":
        return inputs
    if isinstance(inputs, Mapping):
        return type(inputs)({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(v.to(device) if isinstance(v, torch.Tensor) else v for v in inputs)
    return inputs.to(device) if isinstance(inputs, torch.Tensor) else inputs
