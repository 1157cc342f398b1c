"""DDP on 2 CPU processes (torchrun, gloo): data split, averaged gradients, predict order."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.fixtures import RegressionModel, regression_args
from tests.processes import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "ddp_checks.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", SCRIPT,
                "--out", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [{**json.loads((out / f"rank{r}.json").read_text()), "out": str(out)} for r in (0, 1)]


def test_each_rank_trains_on_different_samples(ranks):
    assert [r["world"] for r in ranks] == [2, 2]
    per_epoch = [set(r["seen"][:32]) for r in ranks]  # 64 samples, 2 ranks: 32 each per epoch
    assert not per_epoch[0] & per_epoch[1]
    assert per_epoch[0] | per_epoch[1] == set(range(64))
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 64  # 2 epochs


def test_gradients_are_averaged_like_one_process_with_twice_the_batch(ranks, tmp_path):
    from tests.scripts.ddp_checks import IndexedRegression
    from trainer import Trainer

    assert (ranks[0]["a"], ranks[0]["b"]) == (ranks[1]["a"], ranks[1]["b"])  # replicas stay identical
    single = Trainer(RegressionModel(), regression_args(tmp_path, per_device_train_batch_size=8, num_train_epochs=2,
                                                        learning_rate=0.1, seed=9),
                     train_dataset=IndexedRegression(64), data_collator=_drop_index)
    single.train()
    assert single.model.a.item() == pytest.approx(ranks[0]["a"], rel=1e-5)
    assert single.model.b.item() == pytest.approx(ranks[0]["b"], rel=1e-5)


def test_the_loss_is_token_exact_over_both_ranks_and_their_accumulation(ranks, tmp_path):
    """2 ranks x batch 2 x accumulation 2 of variable-length sequences: the update of one SGD step computed by hand
    on the whole batch of 8 (the label tokens are counted over both ranks, and DDP's averaging undone)."""
    import torch

    from tests.test_token_loss import by_hand

    expected, _ = by_hand()
    weights = torch.load(os.path.join(ranks[0]["out"], "token_exact.pt"), weights_only=True)
    for name, value in weights.items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def _drop_index(features):
    from trainer import default_data_collator

    return {k: v for k, v in default_data_collator(features).items() if k != "index"}


@pytest.mark.parametrize("n", [7, 40, 101])
@pytest.mark.parametrize("accumulation", [None, 2])
def test_distributed_predict_returns_each_input_once_in_order(ranks, n, accumulation):
    for rank in ranks:  # every rank gets the full, ordered result
        got = rank["predict"][f"{n}-{accumulation}"]
        assert got["preds"] == [float(i) for i in range(n)]
        assert got["labels"] == [float(i) for i in range(n)]
        assert got["loss"] == 0.0
