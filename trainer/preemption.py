"""Preemption: SIGTERM (and SIGINT with ``save_on_interrupt``) ends training cleanly.

The handler only sets a flag. The training loop reads it after each optimizer step; then it
saves a checkpoint at that step, runs ``on_train_end`` and ``train()`` exits the process with
status 0, so a scheduler that sends SIGTERM before killing sees a clean stop and the same
command resumes with ``resume_from_checkpoint="auto"``. In distributed runs the ranks agree
(any rank's flag stops all) through one all-reduce per step.

An evaluation during training reads the flag after each batch (``stop_requested``; one all-reduce
per batch in distributed runs): it is abandoned with ``EvaluationInterrupted``, its metrics are not
logged, and the loop saves the step and stops as it does after a step.
"""

from __future__ import annotations

import logging
import signal
import threading

logger = logging.getLogger(__name__)


class EvaluationInterrupted(Exception):
    """An evaluation during training stopped at a preemption signal, before its end."""


def stop_requested(trainer) -> bool:
    """Whether a preemption signal arrived during this ``train()``, on any process (a collective when
    distributed: every process calls it at the same point)."""
    handler = trainer._preemption
    return handler is not None and trainer.runtime.reduce_any(handler.requested)


class PreemptionHandler:
    """Installs flag-setting handlers for the given signals while training runs."""

    def __init__(self, save_on_interrupt: bool):
        self.signals = [signal.SIGTERM] + ([signal.SIGINT] if save_on_interrupt else [])
        self.requested = False
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.received = signal.Signals(signum).name
        logger.warning("%s received: finishing the current step (or evaluation batch), then saving a checkpoint and stopping",
                       self.received)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.info("train() runs outside the main thread: no preemption signal handlers installed")
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
