"""Push to the Hub, against a stand-in Hub server (tests/hub_server.py) reached through HF_ENDPOINT."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch

pytest.importorskip("huggingface_hub")

from tests.fixtures import RegressionDataset, RegressionModel, params, regression_args  # noqa: E402
from tests.hub_server import HubServer  # noqa: E402
from trainer import Trainer, TrainerCallback  # noqa: E402

TOKEN = "hf_stand_in_secret_4711"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in Hub, as huggingface_hub's endpoint (HF_ENDPOINT; huggingface_hub read it at import)."""
    from huggingface_hub import constants

    with HubServer(tokens={TOKEN: "alice"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the suite is offline; the stand-in Hub is local
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield server


def hub_args(tmp_path, **overrides):
    values = dict(push_to_hub=True, hub_token=TOKEN, hub_model_id="tiny-run", save_strategy="steps", save_steps=2,
                  max_steps=6, logging_steps=2)
    values.update(overrides)
    return regression_args(tmp_path, **values)


def commits(server, repo_id="alice/tiny-run") -> list[str]:
    return [c.message for c in server.repos[repo_id].commits["main"]]


def test_every_save_pushes_weights_config_tokenizer_and_card_in_order(tmp_path, hub):
    transformers = pytest.importorskip("transformers")
    from tests.test_transformers import build_tokenizer, tiny_bert, tokenized

    class PushSteps(transformers.TrainerCallback):  # written for transformers' Trainer, unchanged
        steps: list = []

        def on_push_begin(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    tokenizer = build_tokenizer(tmp_path)
    args = hub_args(tmp_path, hub_always_push=True, eval_strategy="steps", eval_steps=2, learning_rate=1e-3)
    trainer = Trainer(tiny_bert(tokenizer), args, train_dataset=tokenized(tokenizer, 48, 0),
                      eval_dataset=tokenized(tokenizer, 16, 1), processing_class=tokenizer, callbacks=[PushSteps])
    trainer.train()  # saves at steps 2, 4, 6: every push queued (hub_always_push)
    assert commits(hub) == [f"Training in progress, step {s}" for s in (2, 4, 6)]
    trainer.push_to_hub(finetuned_from="prajjwal1/bert-tiny", dataset="toy-reviews")
    assert commits(hub)[-1] == "End of training" and trainer.hub_push_failures == []
    assert PushSteps.steps == [2, 4, 6, 6]  # on_push_begin before every push
    files = hub.files("alice/tiny-run")
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
            "training_args.json"} <= set(files)
    assert not any(name.startswith(("optimizer", "scheduler", "rng_state", "checkpoint-")) for name in files)
    assert files["model.safetensors"] == (tmp_path / "out" / "model.safetensors").read_bytes()  # the final weights
    assert json.loads(files["config.json"])["hidden_size"] == 32
    card = files["README.md"].decode()
    assert "base_model: prajjwal1/bert-tiny" in card and "toy-reviews" in card and "## Training results" in card
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    for entry in evals:  # one row per evaluation, with the step and the validation loss
        assert f"| {entry['step']} | {entry['eval_loss']:.4f} |" in card
    assert f"- PyTorch {torch.__version__}" in card and f"- Transformers {transformers.__version__}" in card
    assert "- learning_rate: 0.001" in card


def test_checkpoint_strategy_pushes_a_resumable_last_checkpoint(tmp_path, hub):
    straight = Trainer(RegressionModel(), regression_args(tmp_path / "straight", max_steps=8),
                       train_dataset=RegressionDataset(64))
    straight.train()

    args = hub_args(tmp_path / "cut", hub_strategy="checkpoint", hub_always_push=True, max_steps=8)

    class StopAt6(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # after the save: the run looks killed, not ended
            if state.global_step == 6:
                control.should_training_stop = True

    cut = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(64), callbacks=[StopAt6()])
    cut.train()
    files = hub.files("alice/tiny-run")
    local = tmp_path / "cut" / "out" / "checkpoint-6"
    expected = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    pushed = {k[len("last-checkpoint/"):]: v for k, v in files.items() if k.startswith("last-checkpoint/")}
    assert pushed == expected  # complete and equal, no leftover of checkpoint-4

    fresh = Trainer(RegressionModel(), regression_args(tmp_path / "fresh", max_steps=8, hub_token=TOKEN),
                    train_dataset=RegressionDataset(64))
    fresh.train(resume_from_checkpoint="alice/tiny-run")
    assert fresh.state.global_step == 8
    for name, value in params(straight.model).items():
        assert torch.equal(value, params(fresh.model)[name]), name  # resumed from the Hub, exactly


def test_slow_uploads_do_not_block_the_training_loop(tmp_path, hub):
    hub.delay = 2.0
    saved_at = []

    class Clock(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            saved_at.append(time.perf_counter())

    trainer = Trainer(RegressionModel(), hub_args(tmp_path), train_dataset=RegressionDataset(64), callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    assert len(saved_at) == 3
    assert saved_at[-1] - saved_at[0] < 1.5  # three saves, each upload 2 s: the loop did not wait for them
    assert total >= 2.0  # the final wait: the pushes finish before train() returns
    # the push of step 4 was skipped (step 2's still ran); step 6's skipped too, then pushed at the end
    assert commits(hub) == ["Training in progress, step 2", "Training in progress, step 6"]
    assert hub.files("alice/tiny-run")["model.safetensors"] == \
        (tmp_path / "out" / "checkpoint-6" / "model.safetensors").read_bytes()


def test_the_token_never_reaches_a_file_or_a_log(tmp_path, hub, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    args = hub_args(tmp_path, hub_strategy="checkpoint", disable_tqdm=False, logging_first_step=True)
    assert TOKEN not in repr(args) and TOKEN not in str(args)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(64))
    trainer.train()
    trainer.push_to_hub()
    trainer.save_state()
    assert any(TOKEN in (auth or "") for _, _, auth in hub.requests)  # it was used...
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]  # ...and written nowhere
    assert json.loads((tmp_path / "out" / "training_args.json").read_text())["hub_token"] == "<HUB_TOKEN>"
    assert all(TOKEN.encode() not in data for data in hub.files("alice/tiny-run").values())
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err and TOKEN not in caplog.text


def test_hub_errors_are_clear_and_keep_the_run(tmp_path, hub, monkeypatch):
    with pytest.raises(RuntimeError, match="creating the repo 'tiny-run' failed: the Hub refused the token .401."):
        Trainer(RegressionModel(), hub_args(tmp_path, hub_token="hf_wrong"))
    with pytest.raises(ValueError, match="hub_model_id='bad name!' is not a valid repo name"):
        Trainer(RegressionModel(), hub_args(tmp_path, hub_model_id="bad name!"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    with pytest.raises(RuntimeError, match="cannot reach the Hub at .*The run's files are kept in"):
        Trainer(RegressionModel(), hub_args(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)

    # pushes refused during training (a repo in another namespace): training ends, results stay on disk
    trainer = Trainer(RegressionModel(), hub_args(tmp_path, hub_model_id="bob/theirs", hub_always_push=True),
                      train_dataset=RegressionDataset(64))
    trainer.train()
    assert trainer.state.global_step == 6
    assert len(trainer.hub_push_failures) == 3
    assert "push_to_hub: the push 'Training in progress, step 2' failed: the token may not write to this repo (403)" \
        in trainer.hub_push_failures[0]
    assert (tmp_path / "out" / "checkpoint-6" / "model.safetensors").exists()


def test_private_repo_on_a_branch_with_all_checkpoints(tmp_path, hub):
    args = hub_args(tmp_path, hub_private_repo=True, hub_revision="dev", hub_strategy="all_checkpoints",
                    hub_always_push=True, max_steps=4)
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(64))
    trainer.train()
    repo = hub.repos["alice/tiny-run"]
    assert repo.private and repo.commits["main"] == []  # everything went to the branch
    files = hub.files("alice/tiny-run", branch="dev")
    assert {"checkpoint-2/optimizer.pt", "checkpoint-4/optimizer.pt", "model.safetensors", "README.md"} <= set(files)
    assert files["checkpoint-4/model.safetensors"] == files["model.safetensors"]


def test_no_secret_reaches_any_file_log_card_or_repr(tmp_path, hub, caplog, capsys, monkeypatch):
    """The hub token and a W&B API key, through a run that pushes, reports to W&B (offline) and TensorBoard,
    writes a model card and saves its state: every file under tmp_path is read back."""
    wandb = pytest.importorskip("wandb")
    wandb_key = "wandb_secret_" + "0" * 28  # the 40-character shape of a real key
    monkeypatch.setenv("WANDB_API_KEY", wandb_key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    caplog.set_level(logging.DEBUG)
    args = hub_args(tmp_path, report_to=["wandb", "tensorboard"], hub_strategy="every_save")
    assert TOKEN not in repr(args) and wandb_key not in repr(args) and TOKEN not in args.to_json_string()
    trainer = Trainer(RegressionModel(), args, train_dataset=RegressionDataset(64))
    try:
        trainer.train()
        trainer.save_state()
        trainer.push_to_hub()
    finally:
        wandb.finish()
    secrets = (TOKEN.encode(), wandb_key.encode())
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "README.md" for p in written) and any("tfevents" in p.name for p in written)
    assert any(p.suffix == ".wandb" for p in written)
    leaks = [str(p) for p in written if any(s in p.read_bytes() for s in secrets)]
    assert not leaks
    assert all(s not in data for data in hub.files("alice/tiny-run").values() for s in secrets)
    out = capsys.readouterr()
    for secret in (TOKEN, wandb_key):
        assert secret not in out.out + out.err and secret not in caplog.text


def test_init_hf_repo_creates_the_repo_with_the_token_given(tmp_path, hub):
    trainer = Trainer(RegressionModel(), regression_args(tmp_path, hub_model_id="made-later"))
    assert trainer.hub_model_id is None  # push_to_hub=False: no repo yet
    trainer.init_hf_repo(token=TOKEN)
    assert trainer.hub_model_id == "alice/made-later" and "alice/made-later" in hub.repos


def test_a_lora_model_pushes_its_adapter(tmp_path, hub):
    pytest.importorskip("peft")
    from tests.test_peft import lora_args, lora_gpt2, token_data

    args = lora_args(tmp_path, push_to_hub=True, hub_token=TOKEN, hub_model_id="tiny-lora", save_strategy="steps",
                     save_steps=5, max_steps=5)
    trainer = Trainer(lora_gpt2(), args, train_dataset=token_data(20))
    trainer.train()
    trainer.push_to_hub()
    files = hub.files("alice/tiny-lora")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files)
    assert "model.safetensors" not in files  # the base model is not pushed
    assert files["adapter_model.safetensors"] == (tmp_path / "adapter_model.safetensors").read_bytes()
