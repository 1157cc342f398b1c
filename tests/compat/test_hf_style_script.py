"""examples/run_clm_hf_style.py, a script in the style of transformers' run_clm.py, run with transformers'
Trainer and with ours: the same steps logged, the same learning rates, the same files, the same metrics keys,
and losses that differ only by transformers' count of label tokens (it divides a causal LM's summed loss by
the unshifted count: 31/32 of the model's own loss with blocks of 32; docs/compat.md). Then ours resumes
from the checkpoint at step 10 and ends where the straight run ended."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest

from tests.processes import run

pytest.importorskip("transformers")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "run_clm_hf_style.py")
FLAGS = ["--do_train", "--do_eval", "--max_steps", "20", "--logging_steps", "5", "--save_steps", "10",
         "--per_device_train_batch_size", "8", "--eval_strategy", "steps", "--eval_steps", "10", "--report_to",
         "none", "--disable_tqdm", "true", "--dropout", "0", "--train_sampling_strategy", "sequential",
         "--block_size", "32", "--n_layer", "1", "--n_embd", "32"]


def run_script(out, backend: str, *extra: str) -> dict:
    result = run([sys.executable, SCRIPT, "--output_dir", str(out), *FLAGS, "--backend", backend, *extra],
                 timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(os.path.join(out, "trainer_state.json")) as f:
        return json.load(f)


def entries(state: dict, key: str) -> list[tuple[int, float]]:
    return [(e["step"], e[key]) for e in state["log_history"] if key in e]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clm")
    return {backend: (tmp / backend, run_script(tmp / backend, backend)) for backend in ("transformers", "trainforge")}


def test_same_steps_rates_files_and_metric_keys(runs):
    (theirs_dir, theirs), (ours_dir, ours) = runs["transformers"], runs["trainforge"]
    for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
        assert [s for s, _ in entries(ours, key)] == [s for s, _ in entries(theirs, key)], key
    for (_, a), (_, b) in zip(entries(ours, "learning_rate"), entries(theirs, "learning_rate")):
        assert a == pytest.approx(b, rel=1e-6)  # the rate the logged step used, as transformers logs it
    files = {"theirs": set(os.listdir(theirs_dir)), "ours": set(os.listdir(ours_dir))}
    assert files["ours"] - {"training_args.json"} == files["theirs"] - {"training_args.bin"}
    with open(ours_dir / "all_results.json") as f, open(theirs_dir / "all_results.json") as g:
        ours_results, theirs_results = json.load(f), json.load(g)
    assert set(theirs_results) <= set(ours_results), set(theirs_results) - set(ours_results)


def test_losses_differ_only_by_transformers_count_of_label_tokens(runs):
    theirs, ours = runs["transformers"][1], runs["trainforge"][1]
    scale = 31 / 32  # transformers divides the sum over 31 shifted tokens a block by 32
    for key in ("loss", "eval_loss"):
        for (_, a), (_, b) in zip(entries(ours, key), entries(theirs, key)):
            assert a * scale == pytest.approx(b, rel=2e-4), key
    assert math.isfinite(ours["log_history"][-1]["train_loss"])


def test_ours_resumes_the_checkpoint_and_ends_where_the_straight_run_ended(runs, tmp_path):
    import shutil

    ours_dir, ours = runs["trainforge"]
    cut = tmp_path / "cut"
    shutil.copytree(ours_dir / "checkpoint-10", cut / "checkpoint-10")
    resumed = run_script(cut, "trainforge", "--resume_from_checkpoint", str(cut / "checkpoint-10"))
    assert entries(resumed, "eval_loss") == entries(ours, "eval_loss")
    assert entries(resumed, "loss")[-2:] == entries(ours, "loss")[-2:]
