"""Crash safety and preemption, with real processes: SIGKILL at random moments, SIGTERM mid-run."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

from tests.fixtures import assert_same_weights
from tests.processes import finish, start
from trainer.checkpoint import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "train_until_done.py")
FULL_CHECKPOINT = {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                   "training_args.json", "dataloader_state.pt", "loss_window.json"}


def launch(out, final, **options):
    cmd = [sys.executable, SCRIPT, "--output_dir", str(out), "--final", str(final)]
    for key, value in options.items():
        cmd += [f"--{key}", str(value)]
    return start(cmd)


def wait_for_line(proc, prefix: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before printing {prefix!r}: {proc.stderr.read()[-3000:]}")
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} within {timeout}s")


def run_to_end(out, final, **options) -> None:
    proc = launch(out, final, **options)
    stdout, stderr = finish(proc, timeout=600)
    assert proc.returncode == 0 and "DONE" in stdout, stderr[-3000:]


def test_sigkill_at_random_moments_then_resume_gives_identical_weights(tmp_path):
    steps = 300
    run_to_end(tmp_path / "ref", tmp_path / "ref_final", max_steps=steps)
    rng = random.Random(1234)
    out, final = tmp_path / "run", tmp_path / "run_final"
    kills = mid_save = 0
    while kills < 20:
        newest = list_checkpoints(str(out))
        expected_start = int(newest[-1].rsplit("-", 1)[1]) if newest else 0
        proc = launch(out, final, max_steps=steps)
        start = wait_for_line(proc, "START")
        assert start == f"START {expected_start}", "resume must pick the newest complete checkpoint"
        # a random moment counted in the run's own steps (a wall-clock delay lets a fast machine finish the
        # run before the 20th kill), then within the step's save or the next step
        wait_for_line(proc, f"STEP {expected_start + rng.randint(1, 10)}")
        time.sleep(rng.uniform(0.0, 0.005))
        if proc.poll() is not None:  # finished before the kill: the run is complete
            break
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        kills += 1
        mid_save += any(name.startswith(".tmp-") for name in os.listdir(out))
        for path in list_checkpoints(str(out)):  # every checkpoint that looks complete is complete
            assert FULL_CHECKPOINT <= set(os.listdir(path)), (path, sorted(os.listdir(path)))
    assert kills == 20, f"the run finished after {kills} kills: raise max_steps"
    print(f"{mid_save} of 20 kills left a save in progress")
    assert mid_save >= 3, f"only {mid_save} of 20 kills hit a save in progress: the test lost its point"
    run_to_end(out, final, max_steps=steps)
    assert_same_weights(tmp_path / "ref_final", final)


def test_sigterm_saves_current_step_exits_zero_and_resumes_exactly(tmp_path):
    steps = 120
    run_to_end(tmp_path / "ref", tmp_path / "ref_final", max_steps=steps, save_steps=0)
    out, final = tmp_path / "run", tmp_path / "run_final"
    proc = launch(out, final, max_steps=steps, save_steps=0)
    wait_for_line(proc, "STEP 40")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = finish(proc, timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "DONE" not in stdout  # the script did not go on past train()
    # STEP 40 was read above; the signal can land before step 41 (a loaded machine), so 40 counts too
    last_step = max([40] + [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("STEP")])
    assert 40 <= last_step < steps
    checkpoints = list_checkpoints(str(out))
    assert [os.path.basename(p) for p in checkpoints] == [f"checkpoint-{last_step}"]
    assert FULL_CHECKPOINT <= set(os.listdir(checkpoints[0]))
    assert "SIGTERM received" in stderr
    run_to_end(out, final, max_steps=steps, save_steps=0)
    assert_same_weights(tmp_path / "ref_final", final)
