"""Two 'nodes' on loopback: torchrun --nnodes=2 --node_rank={0,1}, one process each."""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.processes import ENV, finish, free_port, start
from trainer.checkpoint import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "multinode.py")



def run_two_nodes(tmp_path, *script_args):
    port = free_port()
    procs = []
    for node in (0, 1):
        workdir = tmp_path / f"node{node}"  # each node has its own disk
        workdir.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
               "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", SCRIPT, *script_args]
        procs.append(start(cmd, env={**ENV, "PYTHONPATH": ROOT}, cwd=str(workdir)))
    outputs = [finish(p, timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-4000:]
    return "".join(out for out, _ in outputs)


@pytest.mark.parametrize("log_on_each_node", ["true", "false"])
def test_two_nodes_train_together_and_save_on_each_node(tmp_path, log_on_each_node):
    stdout = run_two_nodes(tmp_path, "--log_on_each_node", log_on_each_node)
    assert sorted(re.findall(r"DONE (\d) (\d+)", stdout)) == [("0", "4"), ("1", "4")]
    levels = dict(re.findall(r"LEVEL (\d) (\w+)", stdout))
    assert levels["0"] == "INFO"
    assert levels["1"] == ("INFO" if log_on_each_node == "true" else "ERROR")
    for node in (0, 1):  # save_on_each_node: each node's disk holds complete checkpoints with its rank's state
        checkpoints = list_checkpoints(str(tmp_path / f"node{node}" / "out"))
        assert [os.path.basename(p) for p in checkpoints] == ["checkpoint-2", "checkpoint-4"]
        files = set(os.listdir(checkpoints[-1]))
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json", f"rng_state_{node}.pth"} <= files
