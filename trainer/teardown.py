"""A clean process exit after a distributed run.

A run that finished well could still die at exit with SIGABRT ("terminate called without an
active exception"), rarely and only under load. The mechanism:

- gloo runs each collective on a worker thread (``pt_gloo_runloop``); the thread can still have
  Python to touch after the collective completed: a future's callback, or a tensor whose Python
  object it releases last (it marks the work complete *before* it lets go of it);
- a thread that asks for the GIL once the interpreter is finalizing is ended with
  ``pthread_exit`` (Python < 3.14), whose forced unwind through torch's ``noexcept`` code calls
  ``std::terminate``. torch's own ``destroy_process_group`` waits for completion hooks for this
  reason, and only for those.

``tests/scripts/exit_with_callback.py`` makes the abort certain. ``destroy_process_group()`` joins
the worker threads, but not after a ``DistributedDataParallel`` was built: DDP keeps the group
alive in C++ (torch 2.13), so its threads outlive every Python reference. So the exit handler
registered here, which runs while the interpreter is still whole, destroys the group and then
waits (half a second at most) until the group's native threads sleep, with the GIL released so
that a thread waiting for it can finish. A thread asleep in a collective that a slower peer has
not joined yet looks idle too: an ``async_op`` collective left unwaited at exit is the caller's
to wait for. Only groups this package created are torn down (see Runtime).
"""

from __future__ import annotations

import contextlib
import os
import time

_REGISTERED = False
_THREAD_NAMES = ("pt_gloo_runloop", "gloo_tcp_loop")


def own_process_group() -> None:
    """Tear the default process group down at exit (registered once per process)."""
    global _REGISTERED
    if not _REGISTERED:
        import atexit

        atexit.register(destroy_process_group_at_exit)
        _REGISTERED = True


def destroy_process_group_at_exit() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer that died first must not turn a good exit into a failure
            dist.destroy_process_group()
    wait_for_idle_threads()


def _thread_states(names: tuple[str, ...] = _THREAD_NAMES) -> list[str] | None:
    """The scheduler state (R, S, D...) of this process's native threads with these names;
    None where /proc cannot tell (not Linux)."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    states = []
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name in names:
            states.append(stat[stat.rindex(")") + 2])
    return states


def wait_for_idle_threads(timeout: float = 0.5, quiet_samples: int = 3, interval: float = 0.002) -> bool:
    """Sleep (GIL released) until every gloo thread has been asleep for ``quiet_samples`` samples in a
    row, or ``timeout`` passed. True when they were idle (or there were none)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        states = _thread_states()
        if states is None:  # no /proc: give the threads one interval of the GIL and go
            time.sleep(interval)
            return True
        if not states:
            return True
        quiet = quiet + 1 if all(s in "SI" for s in states) else 0
        if quiet >= quiet_samples:
            return True
        time.sleep(interval)
    return False
