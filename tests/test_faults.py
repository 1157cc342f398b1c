"""Faults during a run: a full disk, a non-finite loss, out of memory, a failing callback, a dying or hanging
process. Each stops (or carries on) without losing a checkpoint and says what happened."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from tests.fixtures import (
    RegressionDataset,
    RegressionDropoutModel,
    RegressionModel,
    params,
    regression_args,
    regression_trainer,
)
from tests.processes import ENV, finish, free_port, kill_group, start
from trainer import Trainer, TrainerCallback, checkpointing
from trainer import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Wide(nn.Module):
    """1.05M parameters (4 MiB of weights, 12 MiB with AdamW's moments): a checkpoint that fills a small disk."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1024, 1024)

    def forward(self, input_x, labels=None):
        y = self.linear(input_x.unsqueeze(-1).expand(-1, 1024)).mean(-1)
        return (nn.functional.mse_loss(y, labels), y)


def _complete(path) -> bool:
    return os.path.isfile(os.path.join(path, ckpt.TRAINER_STATE_NAME))


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MiB tmpfs: one Wide checkpoint (about 12 MiB) fits, a second does not."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_abandons_the_save_and_keeps_the_previous_checkpoint(tmp_path, small_disk):
    args = regression_args(tmp_path, output_dir=str(small_disk / "out"), max_steps=4, save_strategy="steps",
                           save_steps=2, learning_rate=0.01)
    trainer = Trainer(Wide(), args, train_dataset=RegressionDataset())
    with pytest.raises(OSError) as info:
        trainer.train()
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert "the disk is full: no space left on device while writing" in message and "checkpoint-4" in message
    assert "the checkpoints written before are intact (checkpoint-2)" in message
    assert sorted(os.listdir(small_disk / "out")) == ["checkpoint-2"]  # the partial folder was removed
    first = small_disk / "out" / "checkpoint-2"
    assert _complete(first)
    Trainer(Wide(), regression_args(tmp_path, output_dir=str(small_disk / "out"), max_steps=3,
                                    learning_rate=0.01), train_dataset=RegressionDataset()).train(
        resume_from_checkpoint=str(first))  # the checkpoint left resumes


def test_full_disk_is_named_whatever_the_writer_reports(tmp_path, monkeypatch):
    """torch.save reports a full disk as 'unexpected pos'; safetensors and open() with ENOSPC: all are named."""
    trainer = regression_trainer(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    real_write = checkpointing.write_rank_files

    def full_at_step_4(tmp, states, rank, world_size):
        if tmp.endswith("checkpoint-4"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(tmp, states, rank, world_size)

    monkeypatch.setattr(checkpointing, "write_rank_files", full_at_step_4)
    with pytest.raises(OSError, match=r"the disk is full: .*the checkpoints written before are intact "
                                      r"\(checkpoint-2\)"):
        trainer.train()
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(tmp_path / "out")] == ["checkpoint-2"]
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(ckpt.TMP_PREFIX)]


def test_other_write_errors_pass_through_unchanged(tmp_path, monkeypatch):
    trainer = regression_trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)

    def broken(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpointing, "write_rank_files", broken)
    with pytest.raises(PermissionError, match="Permission denied"):
        trainer.train()


class NanAt(RegressionModel):
    """The loss is nan on the forward calls listed."""

    def __init__(self, bad_calls):
        super().__init__()
        self.calls, self.bad_calls = 0, set(bad_calls)

    def forward(self, input_x, labels=None):
        self.calls += 1
        loss, y = super().forward(input_x, labels)
        return (loss * float("nan") if self.calls in self.bad_calls else loss), y


def test_nonfinite_loss_skip_drops_the_update_and_reports_the_step(tmp_path, caplog):
    clean = Trainer(NanAt([]), regression_args(tmp_path / "a", max_steps=6), train_dataset=RegressionDataset())
    clean.train()
    model = NanAt([3])
    skipping = Trainer(model, regression_args(tmp_path / "b", max_steps=6, nonfinite_loss="skip"),
                       train_dataset=RegressionDataset())
    with caplog.at_level(logging.WARNING, logger="trainer"):
        skipping.train()
    assert "The training loss is nan at global step 3: update skipped" in caplog.text
    assert skipping.state.global_step == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())  # nan never reached the weights
    assert params(model) != params(clean.model)  # one update fewer


def test_nonfinite_loss_ignore_lets_nan_into_the_weights(tmp_path):
    model = NanAt([3])
    Trainer(model, regression_args(tmp_path, max_steps=6, max_grad_norm=None),
            train_dataset=RegressionDataset()).train()
    assert not torch.isfinite(model.a).item()  # the HF Trainer's behaviour, kept as the default


def test_nonfinite_loss_stop_keeps_the_checkpoints(tmp_path):
    trainer = Trainer(NanAt([7]), regression_args(tmp_path, max_steps=10, save_strategy="steps", save_steps=2,
                                                  nonfinite_loss="stop"), train_dataset=RegressionDataset())
    with pytest.raises(FloatingPointError, match=r"the training loss is nan at global step 7 .*stopped by "
                                                  r"nonfinite_loss='stop' before the optimizer step, .*checkpoint-6 is "
                                                  "the last checkpoint"):
        trainer.train()
    assert all(_complete(p) for p in ckpt.list_checkpoints(tmp_path / "out"))
    weights = ckpt.read_model_weights(ckpt.list_checkpoints(tmp_path / "out")[-1])
    assert all(torch.isfinite(t).all() for t in weights.values())


class SignalledDuringEvaluation(RegressionDropoutModel):
    """Sends ``signum`` to its own process at its ``at``-th batch of evaluation; counts evaluation batches."""

    def __init__(self, signum=None, at: int = 3):
        torch.manual_seed(0)  # the same initial weights in every run of the test
        super().__init__()
        self.signum, self.at, self.eval_batches = signum, at, 0

    def forward(self, input_x, labels=None):
        if not self.training:
            self.eval_batches += 1
            if self.signum is not None and self.eval_batches == self.at:
                os.kill(os.getpid(), self.signum)
        return super().forward(input_x, labels)


@pytest.mark.parametrize("signum,extra", [(signal.SIGTERM, {}), (signal.SIGINT, {"save_on_interrupt": True})],
                         ids=["sigterm", "ctrl-c"])
def test_a_signal_during_evaluation_stops_it_within_a_batch_then_saves_and_resumes_exactly(tmp_path, signum, extra):
    values = dict(max_steps=8, eval_strategy="steps", eval_steps=4, per_device_eval_batch_size=2, seed=3,
                  logging_steps=2, **extra)
    eval_data = RegressionDataset(64, seed=5)  # 32 batches: the signal comes at the third
    straight = regression_trainer(tmp_path / "straight", model=SignalledDuringEvaluation(), eval_dataset=eval_data,
                                  **values)
    straight.train()
    model = SignalledDuringEvaluation(signum, at=3)
    cut = regression_trainer(tmp_path, model=model, eval_dataset=eval_data, save_strategy="no", **values)
    with pytest.raises(SystemExit) as exited:
        cut.train()
    assert exited.value.code == 0
    assert model.eval_batches == 3  # stopped right after the batch during which the signal came
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-4"]
    assert [e for e in cut.state.log_history if "eval_loss" in e] == []
    resumed = regression_trainer(tmp_path, model=SignalledDuringEvaluation(), eval_dataset=eval_data, **values)
    resumed.train(resume_from_checkpoint=True)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert [e["eval_loss"] for e in resumed.state.log_history if "eval_loss" in e] == \
        [e["eval_loss"] for e in straight.state.log_history if "eval_loss" in e and e["step"] == 8]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_auto_find_batch_size_logs_the_size_it_settled_on(tmp_path, caplog):
    class OomAbove4(RegressionModel):
        def forward(self, input_x, labels=None):
            if input_x.shape[0] > 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            return super().forward(input_x, labels)

    with caplog.at_level(logging.WARNING, logger="trainer"):
        Trainer(OomAbove4(), regression_args(tmp_path, per_device_train_batch_size=16, auto_find_batch_size=True,
                                             max_steps=2), train_dataset=RegressionDataset()).train()
    assert "auto_find_batch_size: out of memory at batch size 16 per device; trained with 4" in caplog.text


def test_a_failing_callback_is_named_and_the_checkpoint_before_it_resumes(tmp_path):
    class Flaky(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise RuntimeError("metrics server unreachable")

    args = regression_args(tmp_path, max_steps=8, save_strategy="steps", save_steps=4)
    with pytest.raises(RuntimeError, match="metrics server unreachable") as info:
        Trainer(RegressionModel(), args, train_dataset=RegressionDataset(), callbacks=[Flaky()]).train()
    assert "raised by callback Flaky.on_step_end at global step 5" in info.value.__notes__[0]
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(tmp_path / "out")] == ["checkpoint-4"]
    resumed = Trainer(RegressionModel(), args, train_dataset=RegressionDataset())
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 8


def test_resume_weights_only_continues_a_save_only_model_checkpoint(tmp_path):
    straight = regression_trainer(tmp_path / "a", max_steps=8, lr_scheduler_type="linear")
    straight.train()
    args = regression_args(tmp_path / "b", max_steps=8, save_strategy="steps", save_steps=4, save_only_model=True,
                           lr_scheduler_type="linear")
    Trainer(RegressionModel(), args, train_dataset=RegressionDataset()).train()
    assert not os.path.exists(tmp_path / "b" / "out" / "checkpoint-4" / ckpt.OPTIMIZER_NAME)
    args.resume_weights_only = True
    resumed = Trainer(RegressionModel(), args, train_dataset=RegressionDataset())
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-4"))
    assert resumed.state.global_step == 8
    assert resumed.lr_scheduler.get_last_lr() == straight.lr_scheduler.get_last_lr()  # the schedule went on


def test_full_determinism_gives_bitwise_equal_weights(tmp_path, restore_determinism):
    class Noisy(RegressionDataset):
        """Random augmentation drawn in the dataloader workers."""

        def __getitem__(self, i):
            sample = super().__getitem__(i)
            sample["input_x"] = sample["input_x"] + torch.rand(()).item() * 0.1
            return sample

    runs = []
    for name in ("a", "b"):
        args = regression_args(tmp_path / name, full_determinism=True, dataloader_num_workers=2, max_steps=6,
                               seed=11)
        trainer = Trainer(model_init=RegressionDropoutModel, args=args, train_dataset=Noisy())
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        trainer.train()
        runs.append(params(trainer.model))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("fault", ["die", "hang"])
def test_a_failing_rank_makes_the_other_exit_within_ddp_timeout(tmp_path, fault):
    timeout = 15
    env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    script = os.path.join(ROOT, "tests", "scripts", "rank_fault.py")
    procs = [start([sys.executable, script, "--output_dir", str(tmp_path / "out"), "--fault", fault,
                    "--ddp_timeout", str(timeout)], {**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in (0, 1)]
    begin = time.monotonic()
    try:
        out, err = finish(procs[0], timeout=timeout + 90)
    finally:
        for proc in procs:
            kill_group(proc)
    assert procs[0].returncode != 0, out
    assert "STEP 0 3" in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED 0")]
    assert failed, f"rank 0 did not fail in train(); stderr tail:\n{err[-2000:]}"
    assert float(failed[0].split()[2]) <= timeout + 30, failed
    assert "a collective of the distributed run failed on process 0: another process died or stopped answering " \
           f"(ddp_timeout={timeout} s)" in err
    assert time.monotonic() - begin < timeout + 90


def test_exit_waits_until_the_gloo_threads_are_idle():
    """The exit handler (trainer.teardown) returns only once threads named like gloo's workers sleep:
    a busy one keeps it waiting until the timeout, an idle one lets it go at once."""
    import ctypes
    import threading

    from trainer import teardown

    before = teardown._thread_states()
    if before is None:
        pytest.skip("needs /proc")
    libc = ctypes.CDLL(None)
    stop, named = threading.Event(), threading.Event()
    busy = threading.Event()
    busy.set()

    def worker():
        libc.prctl(15, b"pt_gloo_runloop", 0, 0, 0)  # PR_SET_NAME: look like gloo's worker to /proc
        named.set()
        while not stop.is_set():
            if busy.is_set():
                sum(range(1000))  # running: state R
            else:
                stop.wait(0.5)  # asleep: state S

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        named.wait(5)
        assert len(teardown._thread_states()) == len(before) + 1  # gloo threads of earlier tests may be there
        t0 = time.monotonic()
        assert teardown.wait_for_idle_threads(timeout=0.3) is False
        assert time.monotonic() - t0 >= 0.3
        busy.clear()
        assert teardown.wait_for_idle_threads(timeout=5) is True
    finally:
        stop.set()
        thread.join()
    deadline = time.monotonic() + 5  # join() returns before the OS has removed the thread from /proc
    while len(teardown._thread_states()) != len(before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(teardown._thread_states()) == len(before)


def test_the_exit_handler_keeps_a_late_gloo_callback_from_aborting_the_process():
    """The abort this guards against, made certain: without the handler a rank dies of SIGABRT at exit."""
    script = os.path.join(ROOT, "tests", "scripts", "exit_with_callback.py")

    def two_ranks(*flags):
        env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
               "PYTHONPATH": ROOT}
        procs = [start([sys.executable, script, *flags], {**env, "RANK": str(r)}) for r in (0, 1)]
        try:
            errs = [finish(proc, timeout=120)[1] for proc in procs]
        finally:
            for proc in procs:
                kill_group(proc)
        return [proc.returncode for proc in procs], errs

    codes, errs = two_ranks("--teardown")
    assert codes == [0, 0], errs
    codes, errs = two_ranks()  # the control: this torch and Python abort without the handler
    if codes == [0, 0]:
        pytest.skip("this torch/Python no longer aborts when a gloo thread needs the GIL at exit")
    assert -signal.SIGABRT in codes and "terminate called without an active exception" in "".join(errs), (codes, errs)
