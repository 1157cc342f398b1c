"""A rank that leaves while gloo's worker thread still has Python to run (a future's callback).

Rank 1 joins the all-reduce 0.3 s late, so rank 0's callback runs after rank 0's script ended. Without
an exit handler the thread asks for the GIL while the interpreter finalizes and the process aborts
("terminate called without an active exception"); with ``--teardown`` the Trainer's handler
(trainer.teardown) destroys the group at exit, which waits for the thread, and both ranks exit 0.
"""

import sys
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
if "--teardown" in sys.argv:
    from trainer.teardown import own_process_group

    own_process_group()
if dist.get_rank() == 1:
    time.sleep(0.3)
work = dist.all_reduce(torch.ones(1 << 16), async_op=True)
work.get_future().then(lambda fut: fut.value())
print("LEAVES", dist.get_rank(), flush=True)
