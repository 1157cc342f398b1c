"""save_async: checkpoints written by a background thread, with the guarantees of a blocking save."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures import regression_trainer
from tests.test_resume import assert_resume_parity
from trainer import TrainerCallback, TrainingArguments, checkpointing
from trainer.async_save import host_copy
from trainer.checkpoint import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_async_checkpoints_hold_the_same_bytes_as_blocking_ones(tmp_path):
    runs = {}
    for mode in (False, True):
        out = tmp_path / f"async-{mode}"
        trainer = regression_trainer(out, save_strategy="steps", save_steps=5, seed=3,
                                     save_async=mode, save_total_limit=2)
        trainer.train()
        runs[mode] = out / "out"
    names = [os.path.basename(p) for p in list_checkpoints(str(runs[True]))]
    assert names == [os.path.basename(p) for p in list_checkpoints(str(runs[False]))] == ["checkpoint-15",
                                                                                          "checkpoint-16"]
    for name in names:
        a, b = runs[False] / name, runs[True] / name
        assert sorted(os.listdir(a)) == sorted(os.listdir(b))
        for file in os.listdir(a):
            if file == "training_args.json":  # holds output_dir and save_async, which differ
                continue
            if file.endswith((".pt", ".pth")):  # pickled containers: equal contents, not necessarily equal bytes
                x, y = torch.load(a / file, weights_only=False), torch.load(b / file, weights_only=False)
                assert repr(x) == repr(y), (name, file)
            else:
                assert (a / file).read_bytes() == (b / file).read_bytes(), (name, file)
    assert not [n for n in os.listdir(runs[True]) if n.startswith(".tmp")]


def test_resume_from_an_async_checkpoint_is_exact(tmp_path):
    assert_resume_parity(tmp_path, 5, save_async=True)


class Gate:
    """Holds the background write of the checkpoint until the training thread has gone on by two steps."""

    def __init__(self, monkeypatch):
        self.release = threading.Event()
        self.writing_threads = []
        real = checkpointing.write_main_files

        def slow_write(*args, **kwargs):
            self.writing_threads.append(threading.current_thread().name)
            assert self.release.wait(timeout=60), "the training thread never went on while the save was pending"
            real(*args, **kwargs)

        monkeypatch.setattr(checkpointing, "write_main_files", slow_write)


class WatchSteps(TrainerCallback):
    def __init__(self, trainer_box, gate, save_step):
        self.box, self.gate, self.save_step = trainer_box, gate, save_step
        self.stepped_while_writing = []

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.box[0]
        # until the gate opens the write cannot finish; after it, the thread may be renaming or ending
        if state.global_step > self.save_step and trainer.checkpoint_writer.busy and not self.gate.release.is_set():
            self.stepped_while_writing.append(state.global_step)
            assert not os.path.exists(os.path.join(args.output_dir, f"checkpoint-{self.save_step}"))
            if len(self.stepped_while_writing) == 2:
                self.gate.release.set()


def test_training_goes_on_while_the_checkpoint_is_written(tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    box = []
    watch = WatchSteps(box, gate, save_step=4)
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=4,
                                 save_async=True, max_steps=8, callbacks=[watch])
    box.append(trainer)
    trainer.train()
    # steps 5 and 6 ran while checkpoint-4 was being written, by the writer thread, not the training thread
    assert watch.stepped_while_writing[:2] == [5, 6]
    assert gate.writing_threads[0] == "trainforge-checkpoint-writer"
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path / "out"))] == ["checkpoint-4", "checkpoint-8"]
    # what was written is the state of step 4, not of the steps that ran during the write
    state4 = load_file(str(tmp_path / "out" / "checkpoint-4" / "model.safetensors"))
    state8 = load_file(str(tmp_path / "out" / "checkpoint-8" / "model.safetensors"))
    assert not torch.equal(state4["a"], state8["a"])
    assert torch.equal(state8["a"], trainer.model.a.detach())


def test_a_failed_background_write_is_raised_and_leaves_earlier_checkpoints(tmp_path, monkeypatch):
    real = checkpointing.write_main_files

    def failing_at_step_8(tmp, files):
        if tmp.endswith("checkpoint-8"):
            raise OSError(28, "No space left on device")
        real(tmp, files)

    monkeypatch.setattr(checkpointing, "write_main_files", failing_at_step_8)
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=4,
                                 save_async=True, max_steps=12)
    with pytest.raises(RuntimeError, match=r"the asynchronous save of .*checkpoint-8 failed \(OSError: \[Errno 28\] the "
                                           r"disk is full: .*its partial files removed; the checkpoints written "
                                           r"before are intact \(checkpoint-4\)"):
        trainer.train()
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path / "out"))] == ["checkpoint-4"]


CRASH_AFTER_SAVE = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fixtures import RegressionDataset, RegressionModel, regression_args
from trainer import Trainer, TrainerCallback
from trainer import checkpointing

real = checkpointing.write_main_files
def slow(*args, **kwargs):
    time.sleep(1.0)  # the write is still going when training crashes
    real(*args, **kwargs)
checkpointing.write_main_files = slow

class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:
            raise RuntimeError("crash at step 5")

from pathlib import Path
args = regression_args(Path({out!r}), save_strategy="steps", save_steps=4, save_async=True, max_steps=12)
Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), callbacks=[Crash()]).train()
"""


def test_a_crash_after_an_async_save_still_leaves_that_checkpoint_complete(tmp_path):
    script = CRASH_AFTER_SAVE.format(root=ROOT, out=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "crash at step 5" in result.stderr
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path / "out"))] == ["checkpoint-4"]
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".tmp")]


def test_host_copy_shares_nothing_but_keeps_tied_tensors_tied():
    weight = torch.randn(3, 3)
    state = {"embed": weight, "head": weight, "step": torch.tensor(4), "groups": [{"lr": 0.1, "params": [0]}]}
    copied = host_copy(state)
    assert copied["embed"] is copied["head"] and copied["embed"].data_ptr() != weight.data_ptr()
    weight.add_(1)
    assert not torch.equal(copied["embed"], weight)
    copied["groups"][0]["lr"] = 0.5
    assert state["groups"][0]["lr"] == 0.1
    # with staging buffers, the next copy goes into the same memory (no allocation), tied tensors still one
    staging = {}
    first = host_copy(state, staging, ("shared",))
    weight.mul_(2)
    second = host_copy(state, staging, ("shared",))
    assert second["embed"] is second["head"] and second["embed"].data_ptr() == first["embed"].data_ptr()
    assert torch.equal(second["embed"], weight) and second["embed"].data_ptr() != weight.data_ptr()
    assert host_copy({"embed": torch.zeros(4)}, staging, ("shared",))["embed"].shape == (4,)  # a new shape: new


def test_an_async_run_reuses_its_host_buffers_and_each_checkpoint_holds_its_own_step(tmp_path):
    trainer = regression_trainer(tmp_path, save_strategy="steps", save_steps=4, max_steps=8, save_async=True)
    seen = []
    real = host_copy

    def recording(obj, staging=None, where=(), _memo=None):
        out = real(obj, staging, where, _memo)
        if where == ("model",):
            seen.append({k: (v.data_ptr(), v.clone()) for k, v in out.items()})
        return out

    import trainer.async_save as async_save

    async_save.host_copy = recording
    try:
        trainer.train()
    finally:
        async_save.host_copy = real
    assert len(seen) == 2 and [p for p, _ in seen[0].values()] == [p for p, _ in seen[1].values()]
    for step, copies in zip((4, 8), seen):
        saved = load_file(str(tmp_path / "out" / f"checkpoint-{step}" / "model.safetensors"))
        assert all(torch.equal(saved[k], value) for k, (_, value) in copies.items())
    assert not all(torch.equal(seen[0][k][1], seen[1][k][1]) for k in seen[0])  # two different states


def test_save_async_is_refused_with_a_sharding_engine(tmp_path):
    with pytest.raises(ValueError, match="save_async=True with sharded_ddp: the engine writes its sharded checkpoint "
                                         "files itself"):
        TrainingArguments(output_dir=str(tmp_path), save_async=True, sharded_ddp="simple")
