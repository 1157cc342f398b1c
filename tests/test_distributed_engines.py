"""DeepSpeed ZeRO-2/3, FairScale sharded DDP and FSDP2 on 2 CPU processes (gloo), under torchrun,
the deepspeed launcher, accelerate launch and plain python; each run has a timeout.

Every run is tests/scripts/parallel_train.py: a small MLP with dropout (so RNG state matters),
12 steps of batch 4 per process. ``ddp_reference`` is the plain DDP run the engines are compared to.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
import torch

from tests.fixtures import assert_same_weights, saved_weights
from tests.processes import free_port, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "parallel_train.py")
ZERO2 = os.path.join(ROOT, "configs", "ds_zero2.json")
ZERO3 = os.path.join(ROOT, "configs", "ds_zero3.json")
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
needs_fairscale = pytest.mark.skipif(importlib.util.find_spec("fairscale") is None, reason="fairscale not installed")



def launch(launcher: str, output_dir, *script_args, nproc: int = 2) -> None:
    args = ["--output_dir", str(output_dir), *map(str, script_args)]
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", SCRIPT,
               *args]
    elif launcher == "deepspeed":
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", str(free_port()),
               SCRIPT, *args]
    elif launcher == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               os.path.join(ROOT, "configs", "accelerate_cpu_2proc.yaml"), "--main_process_port", str(free_port()),
               SCRIPT, *args]
    else:  # plain python: one process
        cmd = [sys.executable, SCRIPT, *args]
    result = run(cmd, timeout=240)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])


def history(output_dir, mode: str = "straight") -> dict:
    with open(os.path.join(output_dir, f"history-{mode}.json")) as f:
        return json.load(f)


def losses(output_dir, mode: str = "straight") -> dict[int, float]:
    return {e["step"]: e["loss"] for e in history(output_dir, mode)["log_history"] if "loss" in e}


def cut_and_resume(launcher, tmp_path, name, *engine_args, stop_at=5, nproc: int = 2) -> str:
    """Stop at ``stop_at`` with a checkpoint, resume in a new launch; returns the run directory."""
    run_dir = tmp_path / name
    launch(launcher, run_dir, *engine_args, "--mode", "cut", "--stop_at", stop_at, nproc=nproc)
    launch(launcher, run_dir, *engine_args, "--mode", "resume", "--final", tmp_path / f"{name}_final", nproc=nproc)
    return str(run_dir)


def assert_cut_run_resumes_exactly(tmp_path, *engine_args, nproc: int = 2) -> None:
    """A straight run and a run cut at step 5 then resumed, under torchrun, end with the same weights."""
    launch("torchrun", tmp_path / "straight", *engine_args, "--final", tmp_path / "straight_final", nproc=nproc)
    cut_and_resume("torchrun", tmp_path, "cut", *engine_args, nproc=nproc)
    assert_same_weights(tmp_path / "straight_final", tmp_path / "cut_final")


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp")
    launch("torchrun", path / "run", "--final", path / "final")
    assert history(path / "run")["world_size"] == 2
    return path


def assert_matches_reference(reference, run_dir, final_dir, rel: float = 1e-5, atol: float = 1e-6) -> None:
    ref, got = losses(reference / "run"), losses(run_dir)
    assert sorted(got) == list(range(1, 13))
    for step in ref:
        assert got[step] == pytest.approx(ref[step], rel=rel), step
    assert_same_weights(reference / "final", final_dir, atol=atol)
    # distributed evaluation after training (FSDP: a collective forward) gives the DDP run's loss
    assert history(run_dir)["eval_loss"] == pytest.approx(history(reference / "run")["eval_loss"], rel=max(rel, 1e-5))


@pytest.mark.parametrize("engine", [
    (),
    pytest.param(("--engine", "deepspeed", "--ds_config", ZERO2), marks=needs_deepspeed),
    pytest.param(("--engine", "deepspeed", "--ds_config", ZERO3), marks=needs_deepspeed),
    ("--engine", "fsdp"),
], ids=["ddp", "zero2", "zero3", "fsdp2"])
def test_a_lora_adapter_trains_and_resumes_exactly_under_each_engine(tmp_path, engine):
    """A PEFT LoRA model on 2 processes: its checkpoints hold the adapter (gathered whole from the shards), and a
    run cut at step 5 and resumed ends with the straight run's adapter, bit for bit."""
    pytest.importorskip("peft")
    assert_cut_run_resumes_exactly(tmp_path, "--lora", *engine)
    files = set(os.listdir(tmp_path / "cut" / "checkpoint-5"))
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files and "model.safetensors" not in files
    adapter = saved_weights(tmp_path / "straight_final")
    assert sorted(adapter) == ["base_model.model.net.3.lora_A.weight", "base_model.model.net.3.lora_B.weight"]
    assert adapter["base_model.model.net.3.lora_B.weight"].shape == (16, 4)  # whole, not a shard
    assert adapter["base_model.model.net.3.lora_B.weight"].abs().sum() > 0  # it trained (B starts at zero)


# -- DeepSpeed ------------------------------------------------------------------------------
def config_variant(tmp_path, base: str, drop: tuple[str, ...], **zero) -> str:
    config = json.load(open(base))
    for key in drop:
        del config[key]
    config["zero_optimization"].update(zero)
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(config))
    return str(path)


@needs_deepspeed
@pytest.mark.parametrize("drop, rel, atol", [(("optimizer", "scheduler"), 1e-5, 1e-6), (("scheduler",), 1e-3, 1e-3)],
                         ids=["trainer-optimizer-and-schedule", "deepspeed-optimizer-trainer-schedule"])
def test_zero2_matches_ddp(ddp_reference, tmp_path, drop, rel, atol):
    """Without the config's scheduler (DeepSpeed's WarmupDecayLR holds the first lr one step longer than
    the Trainer's schedule) the ZeRO-2 run is the DDP run: same losses, same final weights. DeepSpeed's own
    AdamW decays every parameter where the Trainer's skips biases, hence the looser tolerance there."""
    config = config_variant(tmp_path, ZERO2, drop)
    launch("torchrun", tmp_path / "run", "--engine", "deepspeed", "--ds_config", config, "--final", tmp_path / "final")
    assert history(tmp_path / "run")["strategy"] == "deepspeed"
    assert_matches_reference(ddp_reference, tmp_path / "run", tmp_path / "final", rel=rel, atol=atol)


@needs_deepspeed
def test_zero3_without_gathering_saves_partitions_that_zero_to_fp32_rebuilds(ddp_reference, tmp_path):
    config = config_variant(tmp_path, ZERO3, ("optimizer", "scheduler"), stage3_gather_16bit_weights_on_model_save=False)
    launch("torchrun", tmp_path / "run", "--engine", "deepspeed", "--ds_config", config, "--final", tmp_path / "final")
    final = tmp_path / "final"
    assert "model.safetensors" not in os.listdir(final)
    assert {"latest", "global_step12", "zero_to_fp32.py"} <= set(os.listdir(final))
    from integrations.deepspeed import load_fp32_weights

    # the ZeRO-3 engine evaluated after training (a collective forward, with one rank's batch part padding)
    assert history(tmp_path / "run")["eval_loss"] == pytest.approx(history(ddp_reference / "run")["eval_loss"], rel=1e-5)
    rebuilt, reference = load_fp32_weights(str(final)), saved_weights(ddp_reference / "final")
    assert rebuilt.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(rebuilt[key], reference[key], atol=1e-6, rtol=0)


@needs_deepspeed
def test_zero2_torchrun_checkpoint_through_the_engine_resumes_exactly(tmp_path):
    engine = ("--engine", "deepspeed", "--ds_config", ZERO2)
    launch("torchrun", tmp_path / "straight", *engine, "--final", tmp_path / "straight_final")
    run_dir = cut_and_resume("torchrun", tmp_path, "cut", *engine)
    checkpoint = os.path.join(run_dir, "checkpoint-5")
    files = set(os.listdir(checkpoint))
    assert {"latest", "global_step5", "zero_to_fp32.py", "model.safetensors", "trainer_state.json",
            "rng_state_0.pth", "rng_state_1.pth"} <= files
    assert "optimizer.pt" not in files  # the optimizer partitions are the engine's
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= set(
        os.listdir(os.path.join(checkpoint, "global_step5")))
    assert_same_weights(tmp_path / "straight_final", tmp_path / "cut_final")
    straight, resumed = losses(tmp_path / "straight"), losses(run_dir, "resume")
    assert {s: resumed[s] for s in range(6, 13)} == {s: straight[s] for s in range(6, 13)}
    assert straight[12] < straight[1]


@needs_deepspeed
def test_zero3_deepspeed_launcher_gathers_weights_and_resumes_exactly(tmp_path):
    engine = ("--engine", "deepspeed", "--ds_config", ZERO3)
    launch("deepspeed", tmp_path / "straight", *engine, "--final", tmp_path / "straight_final")
    assert history(tmp_path / "straight")["world_size"] == 2
    run_dir = cut_and_resume("deepspeed", tmp_path, "cut", *engine)
    assert_same_weights(tmp_path / "straight_final", tmp_path / "cut_final")
    # save_model wrote the full weights gathered from both ranks: they load into a fresh model
    sys.path.insert(0, os.path.dirname(SCRIPT))
    from parallel_train import WideRegression

    model = WideRegression()
    missing, unexpected = model.load_state_dict(saved_weights(tmp_path / "straight_final"), strict=True)
    assert not missing and not unexpected
    assert saved_weights(tmp_path / "straight_final")["net.3.weight"].shape == (16, 16)
    # the zero_to_fp32 path rebuilds the same weights from the partitions of checkpoint-5
    from integrations.deepspeed import load_fp32_weights

    rebuilt = load_fp32_weights(os.path.join(run_dir, "checkpoint-5"))
    gathered = saved_weights(os.path.join(run_dir, "checkpoint-5"))
    assert rebuilt.keys() == gathered.keys()
    for key in gathered:
        assert torch.equal(rebuilt[key], gathered[key]), key


@needs_deepspeed
def test_deepspeed_under_plain_python_runs_one_process(tmp_path):
    launch("python", tmp_path / "run", "--engine", "deepspeed", "--ds_config", ZERO2, "--batch", 8)
    result = history(tmp_path / "run")
    assert (result["world_size"], result["strategy"]) == (1, "deepspeed")
    assert max(losses(tmp_path / "run")) == 12


# -- FairScale ------------------------------------------------------------------------------
@needs_fairscale
def test_fairscale_simple_matches_ddp_checkpoints_consolidated_and_resumes(ddp_reference, tmp_path):
    launch("torchrun", tmp_path / "straight", "--engine", "fairscale", "--final", tmp_path / "straight_final")
    assert history(tmp_path / "straight")["strategy"] == "sharded_ddp"
    assert_matches_reference(ddp_reference, tmp_path / "straight", tmp_path / "straight_final")
    run_dir = cut_and_resume("torchrun", tmp_path, "cut", "--engine", "fairscale")
    optimizer = torch.load(os.path.join(run_dir, "checkpoint-5", "optimizer.pt"), weights_only=True)
    # consolidated on rank 0: the state of all 6 parameters, though each rank held about half
    assert len(optimizer["state"]) == 6
    assert all(int(s["step"]) == 5 for s in optimizer["state"].values())
    assert_same_weights(tmp_path / "straight_final", tmp_path / "cut_final")


# -- FSDP2 ----------------------------------------------------------------------------------
def test_fsdp2_matches_ddp_and_resumes_from_full_state(ddp_reference, tmp_path):
    launch("torchrun", tmp_path / "straight", "--engine", "fsdp", "--final", tmp_path / "straight_final")
    assert history(tmp_path / "straight")["strategy"] == "fsdp"
    assert history(tmp_path / "straight")["grad_forwards"] == 12  # one training forward a step, no recompute
    assert_matches_reference(ddp_reference, tmp_path / "straight", tmp_path / "straight_final")
    run_dir = cut_and_resume("torchrun", tmp_path, "cut", "--engine", "fsdp")
    checkpoint = os.path.join(run_dir, "checkpoint-5")
    assert {"model.safetensors", "optimizer.pt"} <= set(os.listdir(checkpoint))
    assert len(torch.load(os.path.join(checkpoint, "optimizer.pt"), weights_only=True)["state"]) == 6
    assert_same_weights(tmp_path / "straight_final", tmp_path / "cut_final")


def test_fsdp2_activation_checkpointing_recomputes_each_unit_and_trains_as_ddp(ddp_reference, tmp_path):
    launch("torchrun", tmp_path / "run", "--engine", "fsdp", "--fsdp_recompute", "--final", tmp_path / "final")
    assert history(tmp_path / "run")["grad_forwards"] == 24  # each step's forward runs again in its backward
    assert_matches_reference(ddp_reference, tmp_path / "run", tmp_path / "final")  # same losses, weights, keys


def test_fsdp2_sharded_checkpoints_resume_exactly(ddp_reference, tmp_path):
    run_dir = cut_and_resume("torchrun", tmp_path, "cut", "--engine", "fsdp", "--fsdp_state", "sharded")
    checkpoint = os.path.join(run_dir, "checkpoint-5")
    files = set(os.listdir(checkpoint))
    assert "fsdp_state" in files and "model.safetensors" not in files and "optimizer.pt" not in files
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= set(os.listdir(os.path.join(checkpoint, "fsdp_state")))
    assert_same_weights(ddp_reference / "final", tmp_path / "cut_final", atol=1e-6)


# -- accelerate launch ----------------------------------------------------------------------
def test_accelerate_launch_runs_the_same_script_on_two_cpu_processes(ddp_reference, tmp_path):
    launch("accelerate", tmp_path / "run", "--final", tmp_path / "final")
    assert history(tmp_path / "run")["world_size"] == 2
    assert_matches_reference(ddp_reference, tmp_path / "run", tmp_path / "final")
