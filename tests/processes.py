"""Subprocesses for tests: each in its own process group, killed whole on timeout or failure.

torchrun and dataloader workers spawn children; killing only the parent would leave them
running (and holding ports) after a failed test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # conftest sets PYTHONFAULTHANDLER


def free_port() -> int:
    """A TCP port nobody listens on now, for a launcher's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV,
                            start_new_session=True, cwd=cwd)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for the process; on timeout kill its whole group and fail."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} ran past {timeout}s; stderr tail:\n{err[-3000:]}") from None


def run(cmd: list[str], timeout: float, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    proc = start(cmd, env, cwd)
    out, err = finish(proc, timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
