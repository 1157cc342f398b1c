"""Data: collators, samplers, column removal, evaluation and prediction outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.fixtures import RegressionDataset, RegressionModel, regression_args, regression_trainer
from trainer import DataCollatorWithPadding, Trainer, default_data_collator
from trainer.data import EpochSeededSampler, LengthGroupedSampler


class ClassifierDataset(torch.utils.data.Dataset):
    """Variable-length token sequences labelled by whether their sum is even (3 classes via mod 3)."""

    def __init__(self, n: int = 24, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = [rng.integers(1, 20, size=int(rng.integers(2, 9))).tolist() for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        ids = self.items[i]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "label": sum(ids) % 3}


class TinyClassifier(nn.Module):
    """Embedding-bag classifier; also returns per-token logits so outputs are ragged across batches."""

    def __init__(self, vocab: int = 20, classes: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab, 8, padding_idx=0)
        self.head = nn.Linear(8, classes)
        self.token_head = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask=None, labels=None):
        h = self.emb(input_ids)
        logits = self.head(h.mean(1))
        out = {"logits": logits, "token_logits": self.token_head(h)}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class ListPadder:
    """A minimal tokenizer-like object with ``pad`` (what DataCollatorWithPadding calls)."""

    def pad(self, features, padding=True, max_length=None, pad_to_multiple_of=None, return_tensors="pt"):
        longest = max(len(f["input_ids"]) for f in features)
        if pad_to_multiple_of:
            longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
        out = {"input_ids": [], "attention_mask": []}
        for f in features:
            gap = longest - len(f["input_ids"])
            out["input_ids"].append(f["input_ids"] + [0] * gap)
            out["attention_mask"].append(f["attention_mask"] + [0] * gap)
        out = {k: torch.tensor(v) for k, v in out.items()}
        if "label" in features[0]:
            out["label"] = torch.tensor([f["label"] for f in features])
        return out


def test_default_collator_stacks_dicts_and_renames_label():
    batch = default_data_collator([{"x": np.float32(1), "label": 2, "name": "a"}, {"x": np.float32(3), "label": 0,
                                                                                     "name": "b"}])
    assert set(batch) == {"x", "labels"}
    assert batch["labels"].tolist() == [2, 0]
    assert batch["x"].dtype == torch.float32
    pairs = default_data_collator([(torch.ones(2), 1), (torch.zeros(2), 0)])
    assert pairs[0].shape == (2, 2) and pairs[1].tolist() == [1, 0]


def test_padding_collator_used_when_tokenizer_given(tmp_path):
    trainer = Trainer(TinyClassifier(), regression_args(tmp_path, max_steps=3), train_dataset=ClassifierDataset(),
                      processing_class=ListPadder())
    assert isinstance(trainer.data_collator, DataCollatorWithPadding)
    trainer.train()
    batch = trainer.data_collator([ClassifierDataset()[0], ClassifierDataset()[1]])
    assert batch["input_ids"].shape[1] == max(len(ClassifierDataset().items[i]) for i in (0, 1))
    assert "labels" in batch and "label" not in batch


def test_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSeededSampler(20, seed=3), EpochSeededSampler(20, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG does not matter
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == list(range(20))


def test_sampler_shards_ranks_disjointly_with_padding():
    shards = [list(EpochSeededSampler(10, seed=0, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set().union(*shards) == set(range(10))
    dropped = [list(EpochSeededSampler(10, seed=0, num_replicas=3, rank=r, drop_last=True)) for r in range(3)]
    assert [len(s) for s in dropped] == [3, 3, 3] and len(set().union(*dropped)) == 9


def test_length_grouped_sampler_groups_lengths():
    lengths = list(np.random.default_rng(0).integers(1, 100, size=400))
    order = list(LengthGroupedSampler(lengths, batch_size=4, seed=0))
    assert sorted(order) == list(range(400))
    assert lengths[order[0]] == max(lengths)  # the longest batch comes first
    batches = [order[i : i + 4] for i in range(0, 400, 4)]
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 10  # random batches of 4 spread ~50 on average


def test_group_by_length_in_training(tmp_path):
    trainer = Trainer(TinyClassifier(), regression_args(tmp_path, group_by_length=True, max_steps=4),
                      train_dataset=ClassifierDataset(), processing_class=ListPadder())
    assert isinstance(trainer.get_train_dataloader().batch_sampler.sampler, LengthGroupedSampler)
    trainer.train()


def test_remove_unused_columns_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    base = ClassifierDataset(16)
    data = datasets.Dataset.from_dict({
        "input_ids": [x["input_ids"] for x in base], "attention_mask": [x["attention_mask"] for x in base],
        "label": [x["label"] for x in base], "text": ["unused"] * 16, "source": [1] * 16,
    })
    trainer = Trainer(TinyClassifier(), regression_args(tmp_path, max_steps=2), train_dataset=data,
                      processing_class=ListPadder())
    loader = trainer.get_train_dataloader()
    assert loader.dataset.column_names == ["input_ids", "attention_mask", "label"]
    trainer.train()
    kept = Trainer(TinyClassifier(), regression_args(tmp_path, remove_unused_columns=False), train_dataset=data)
    assert "text" in kept.get_train_dataloader().dataset.column_names


def test_evaluate_and_predict_with_metrics(tmp_path):
    seen = {}

    def compute_metrics(pred):
        seen["shapes"] = (pred.predictions.shape, pred.label_ids.shape)
        return {"mae": np.abs(pred.predictions - pred.label_ids).mean()}

    trainer = Trainer(RegressionModel(a=2.0, b=3.0), regression_args(tmp_path), eval_dataset=RegressionDataset(20),
                      compute_metrics=compute_metrics)
    metrics = trainer.evaluate()
    assert seen["shapes"] == ((20,), (20,))
    assert metrics["eval_mae"] < 0.2 and metrics["eval_loss"] < 0.05
    assert isinstance(metrics["eval_mae"], float)
    for key in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second"):
        assert key in metrics
    out = trainer.predict(RegressionDataset(12, seed=5))
    data = RegressionDataset(12, seed=5)
    np.testing.assert_allclose(out.predictions, 2 * data.x + 3, rtol=1e-6)
    np.testing.assert_array_equal(out.label_ids, data.labels[0])
    assert set(out.metrics) >= {"test_loss", "test_mae", "test_runtime"}


def test_eval_loss_is_the_sample_mean_with_uneven_batches(tmp_path):
    data = RegressionDataset(20)  # batches of 8, 8, 4
    trainer = Trainer(RegressionModel(a=1.0, b=0.0), regression_args(tmp_path), eval_dataset=data)
    expected = np.mean((data.x - data.labels[0]) ** 2)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_eval_dataset_dict_prefixes_metrics(tmp_path):
    trainer = regression_trainer(tmp_path, eval_strategy="epoch",
                                 eval_dataset={"near": RegressionDataset(8, seed=1), "far": RegressionDataset(8, seed=2)})
    trainer.train()
    evals = [e for e in trainer.state.log_history if any(k.startswith("eval_") for k in e)]
    keys = set().union(*evals)
    assert {"eval_near_loss", "eval_far_loss", "eval_near_runtime"} <= keys
    assert set(trainer.evaluate()) >= {"eval_near_loss", "eval_far_loss"}


def test_predict_pads_ragged_outputs_with_minus_100(tmp_path):
    data = ClassifierDataset(10)
    trainer = Trainer(TinyClassifier(), regression_args(tmp_path, per_device_eval_batch_size=4),
                      processing_class=ListPadder())
    out = trainer.predict(data)
    class_logits, token_logits = out.predictions
    assert class_logits.shape == (10, 3)
    longest = max(len(x) for x in data.items)
    assert token_logits.shape == (10, longest, 2)
    for i, _ids in enumerate(data.items):
        batch = data.items[(i // 4) * 4 : (i // 4) * 4 + 4]
        batch_len = max(len(x) for x in batch)
        assert (token_logits[i, batch_len:] == -100).all()
        assert (token_logits[i, :batch_len] != -100).all()
    assert out.label_ids.tolist() == [x["label"] for x in data]


def test_prediction_loss_only_and_eval_accumulation(tmp_path):
    trainer = Trainer(RegressionModel(a=2.0, b=3.0), regression_args(tmp_path, prediction_loss_only=True),
                      compute_metrics=lambda p: pytest.fail("no metrics with prediction_loss_only"))
    out = trainer.predict(RegressionDataset(20))
    assert out.predictions is None and "test_loss" in out.metrics
    trainer = Trainer(RegressionModel(a=2.0, b=3.0), regression_args(tmp_path, eval_accumulation_steps=1))
    np.testing.assert_allclose(trainer.predict(RegressionDataset(20)).predictions,
                               2 * RegressionDataset(20).x + 3, rtol=1e-6)


def test_inputs_and_preprocess_logits_for_metrics(tmp_path):
    seen = {}

    def compute_metrics(pred):
        preds, labels, inputs = pred
        seen["inputs"] = inputs
        seen["preds"] = preds
        return {}

    trainer = Trainer(
        TinyClassifier(), regression_args(tmp_path, include_inputs_for_metrics=True), processing_class=ListPadder(),
        compute_metrics=compute_metrics, preprocess_logits_for_metrics=lambda logits, labels: logits[0].argmax(-1),
    )
    trainer.evaluate(ClassifierDataset(8))
    assert seen["preds"].shape == (8,) and seen["preds"].dtype == np.int64
    assert seen["inputs"].shape[0] == 8


def test_several_label_names(tmp_path):
    class TwoHeads(RegressionModel):
        def forward(self, input_x, labels=None, labels_b=None):
            y = input_x * self.a + self.b
            if labels is None:
                return (y,)
            return (nn.functional.mse_loss(y, labels) + nn.functional.mse_loss(y, labels_b), y)

    trainer = Trainer(TwoHeads(), regression_args(tmp_path),
                      train_dataset=RegressionDataset(label_names=("labels", "labels_b")))
    assert trainer.label_names == ["labels", "labels_b"]
    out = trainer.predict(RegressionDataset(8, label_names=("labels", "labels_b")))
    assert isinstance(out.label_ids, tuple) and len(out.label_ids) == 2


def test_length_column_name_is_used(tmp_path):
    datasets = pytest.importorskip("datasets")
    base = ClassifierDataset(16)
    data = datasets.Dataset.from_dict({
        "input_ids": [x["input_ids"] for x in base], "attention_mask": [x["attention_mask"] for x in base],
        "label": [x["label"] for x in base], "n_tokens": [100 - len(x["input_ids"]) for x in base],
    })
    trainer = Trainer(TinyClassifier(), regression_args(tmp_path, group_by_length=True, length_column_name="n_tokens",
                                                        remove_unused_columns=False),
                      train_dataset=data, processing_class=ListPadder())
    sampler = trainer.get_train_dataloader().batch_sampler.sampler
    assert sampler.lengths == list(data["n_tokens"])


def test_epoch_batch_sampler_state_round_trip():
    from trainer.data import EpochBatchSampler

    a = EpochBatchSampler(EpochSeededSampler(30, seed=4), batch_size=4, drop_last=False)
    a.set_epoch(2)
    full = list(a)
    assert len(full) == len(a) == 8 and [len(b) for b in full][-1] == 2
    it = iter(a)
    for _ in range(3):
        next(it)
    state = a.state_dict()
    assert state == {"epoch": 2, "batches_yielded": 3}
    b = EpochBatchSampler(EpochSeededSampler(30, seed=4), batch_size=4, drop_last=False)
    b.load_state_dict(state)
    assert list(b) == full[3:]
    assert list(b) == full  # the skip applies to one iteration only
    dropped = EpochBatchSampler(EpochSeededSampler(30, seed=4), batch_size=4, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 7


def test_the_generators_a_dataset_draws_from_are_found_from_its_first_sample_and_left_as_they_were():
    import random

    import numpy as np

    from trainer.rng_streams import NUMPY, PYTHON, TORCH, global_streams_used

    class Draws(torch.utils.data.Dataset):
        def __init__(self, draw):
            self.draw = draw

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"x": self.draw()}

    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    assert global_streams_used(Draws(lambda: 1.0)) == 0
    assert global_streams_used(Draws(lambda: torch.rand(()))) == TORCH
    assert global_streams_used(Draws(lambda: random.random())) == PYTHON
    assert global_streams_used(Draws(lambda: np.random.rand())) == NUMPY
    assert global_streams_used(Draws(lambda: 1 / 0)) == TORCH | PYTHON | NUMPY  # a failing fetch: seed them all
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
