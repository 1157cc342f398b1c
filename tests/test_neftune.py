"""NEFTune (neftune_noise_alpha): noisy input embeddings in training forwards only, no hook left on the model after
train(), and a run cut and resumed ends bit-equal to the straight run (the noise is drawn from the seeded stream)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tests.test_resume import StopAt  # noqa: E402
from tests.test_token_loss import gpt2, pad, sequences  # noqa: E402
from trainer import Trainer, TrainerCallback, TrainingArguments  # noqa: E402


def neftune_args(out, **overrides):
    values = dict(neftune_noise_alpha=5.0, max_steps=6, per_device_train_batch_size=2, learning_rate=1e-2,
                  report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=2)
    values.update(overrides)
    return TrainingArguments(str(out), **values)


class TrainVsEval(TrainerCallback):
    """At step 2: the same batch through the model in training mode (noise; the model has no dropout) and in
    eval mode (none), and the embedding output of two training forwards."""

    def __init__(self):
        self.seen = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != 2:
            return
        batch = pad(sequences(2))
        with torch.no_grad():
            train_logits = model(**batch).logits
            embeddings = model.get_input_embeddings()
            noisy = [embeddings(batch["input_ids"]) for _ in range(2)]
            model.eval()
            eval_logits, clean = model(**batch).logits, embeddings(batch["input_ids"])
            model.train()
        self.seen = {"train": train_logits, "eval": eval_logits, "noisy": noisy, "clean": clean}


def test_noise_in_training_forwards_only_and_no_hook_after_training(tmp_path):
    probe = TrainVsEval()
    trainer = Trainer(gpt2(), neftune_args(tmp_path), train_dataset=sequences(), data_collator=pad, callbacks=[probe])
    trainer.train()
    seen = probe.seen
    assert not torch.allclose(seen["train"], seen["eval"])
    assert not torch.equal(seen["noisy"][0], seen["noisy"][1])  # fresh noise at every forward
    bound = 5.0 / (seen["clean"].size(1) * seen["clean"].size(2)) ** 0.5
    assert (seen["noisy"][0] - seen["clean"]).abs().max() <= bound + 1e-6  # alpha / sqrt(length x hidden)
    embeddings = trainer.model.get_input_embeddings()
    assert not embeddings._forward_hooks and not hasattr(embeddings, "neftune_noise_alpha")
    batch = pad(sequences(2))
    with torch.no_grad():
        assert torch.equal(trainer.model(**batch).logits, trainer.model(**batch).logits)  # clean after train()


def test_a_neftune_run_cut_and_resumed_is_bit_equal_to_the_straight_run(tmp_path):
    straight = Trainer(gpt2(), neftune_args(tmp_path / "straight"), train_dataset=sequences(), data_collator=pad)
    straight.train()
    cut = Trainer(gpt2(), neftune_args(tmp_path / "cut", save_strategy="steps", save_steps=3),
                  train_dataset=sequences(), data_collator=pad, callbacks=[StopAt(3)])
    cut.train()
    resumed = Trainer(gpt2(), neftune_args(tmp_path / "cut"), train_dataset=sequences(), data_collator=pad)
    resumed.train(resume_from_checkpoint=True)
    plain = Trainer(gpt2(), neftune_args(tmp_path / "plain", neftune_noise_alpha=None), train_dataset=sequences(),
                    data_collator=pad)
    plain.train()
    for (name, value), other in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(value, other), name
    assert any(not torch.equal(a, b) for a, b in zip(straight.model.parameters(), plain.model.parameters()))
