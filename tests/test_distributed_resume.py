"""Resume and preemption across 2 processes (torchrun, gloo on CPU)."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import signal
import sys
import time

import pytest

from tests.fixtures import assert_same_weights
from tests.processes import finish, start
from trainer.checkpoint import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "ddp_train.py")


def torchrun(*script_args, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", SCRIPT,
           *map(str, script_args)]
    proc = start(cmd)
    if not wait:
        return proc
    stdout, stderr = finish(proc, timeout=300)
    assert proc.returncode == 0, stderr[-4000:]
    return stdout


def test_two_process_resume_is_exact_with_per_rank_state(tmp_path):
    out = torchrun("--output_dir", tmp_path / "straight", "--final", tmp_path / "straight_final", "--mode", "straight",
                   "--report_to", "tensorboard", "--count_tokens")
    # the straight run also checks the logging side of two processes: tokens summed over both ranks,
    # one TensorBoard event file, written by rank 0
    # the two ranks share one pipe, so their lines may run together: find the records, not the lines
    assert sorted(re.findall(r"TOKENS \d+ \d+", out)) == ["TOKENS 0 192", "TOKENS 1 192"]
    if importlib.util.find_spec("tensorboard") is not None:
        from tests.backend_files import tensorboard_scalars

        (run_dir,) = glob.glob(str(tmp_path / "straight" / "runs" / "*"))
        assert len(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))) == 1
        scalars = tensorboard_scalars(run_dir)
        assert [s for s, _ in scalars["train/loss"]] == [5, 10, 15, 20]
        assert scalars["train/num_input_tokens_seen"] == [(5, 40.0), (10, 80.0), (15, 120.0), (20, 160.0), (24, 192.0)]
        # the rate is of both ranks' tokens: rate x runtime gives the summed count back (runtime rounded to 0.1 ms)
        runtime, tokens = dict(scalars["train/train_runtime"]), dict(scalars["train/num_input_tokens_seen"])
        rates = scalars["train/train_tokens_per_second"]
        assert [step for step, _ in rates] == [5, 10, 15, 20]
        for step, rate in rates:
            assert rate * runtime[step] == pytest.approx(tokens[step], rel=0.01)
    torchrun("--output_dir", tmp_path / "cut", "--final", tmp_path / "unused", "--mode", "cut", "--stop_at", 11)
    ckpt = tmp_path / "cut" / "checkpoint-11"
    files = set(os.listdir(ckpt))
    assert {"rng_state_0.pth", "rng_state_1.pth", "dataloader_state_0.pt", "dataloader_state_1.pt"} <= files
    assert "rng_state.pth" not in files
    torchrun("--output_dir", tmp_path / "cut", "--final", tmp_path / "resumed_final", "--mode", "resume")
    assert_same_weights(tmp_path / "straight_final", tmp_path / "resumed_final")


def test_sigterm_to_one_rank_stops_all_ranks_at_the_same_step(tmp_path):
    torchrun("--output_dir", tmp_path / "straight", "--final", tmp_path / "straight_final", "--mode", "straight",
             "--max_steps", 400)
    proc = torchrun("--output_dir", tmp_path / "run", "--final", tmp_path / "unused", "--mode", "straight",
                    "--max_steps", 400, wait=False)
    pids, last = {}, {}

    def note(line):  # two processes share the pipe: their lines may run together
        for rank, step in re.findall(r"STEP (\d+) (\d+)", line):
            last[int(rank)] = int(step)
        for rank, pid in re.findall(r"PID (\d+) (\d+)", line):
            pids[int(rank)] = int(pid)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-4000:]
        note(line)
        if len(pids) == 2 and last.get(0, 0) >= 30:
            break
    os.kill(pids[1], signal.SIGTERM)  # only rank 1 is told
    stdout, stderr = finish(proc, timeout=120)
    assert proc.returncode == 0, stderr[-4000:]
    for line in stdout.splitlines():
        note(line)
    assert last[0] == last[1] < 400, last
    checkpoints = list_checkpoints(str(tmp_path / "run"))
    assert [os.path.basename(p) for p in checkpoints] == [f"checkpoint-{last[0]}"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(checkpoints[0]))
    torchrun("--output_dir", tmp_path / "run", "--final", tmp_path / "resumed_final", "--mode", "resume",
             "--max_steps", 400)
    assert_same_weights(tmp_path / "straight_final", tmp_path / "resumed_final")


def test_sigterm_to_one_rank_during_evaluation_stops_both_at_the_same_batch_and_saves(tmp_path):
    stdout = torchrun("--output_dir", tmp_path / "run", "--final", tmp_path / "unused", "--mode", "straight",
                      "--term_in_eval", 3)
    batches = {}
    for rank, count in re.findall(r"EVALBATCH (\d+) (\d+)", stdout):
        batches[int(rank)] = max(batches.get(int(rank), 0), int(count))
    assert batches == {0: 3, 1: 3}, batches  # of the 64 batches each rank evaluates: both stop after the third
    checkpoints = list_checkpoints(str(tmp_path / "run"))
    assert [os.path.basename(p) for p in checkpoints] == ["checkpoint-8"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(checkpoints[0]))
