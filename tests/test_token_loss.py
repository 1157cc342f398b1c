"""Token-exact loss: with variable-length sequences and -100 padding, an optimizer step's update is the gradient of
the mean loss over all the step's label tokens, whatever the accumulation, equal to one SGD step computed by hand
from the model's own loss on the whole batch."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from benchmarks.lm_runs import pad_batch as pad  # noqa: E402
from trainer import Trainer, TrainingArguments  # noqa: E402

LR = 0.5


def gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config)


def sequences(n: int = 8, seed: int = 3) -> list[dict]:
    """Lengths 3 to 16, some label positions masked: the micro-batches hold very different token counts."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(3, 17, (1,), generator=generator))
        ids = torch.randint(0, 64, (length,), generator=generator)
        labels = ids.clone()
        labels[: i % 3] = -100  # a masked prompt of 0 to 2 tokens
        out.append({"input_ids": ids, "labels": labels})
    return out


def one_step(tmp_path, batch: int, accumulation: int, **overrides) -> dict:
    values = dict(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, max_steps=1,
                  optim="sgd", learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=0.0, report_to="none",
                  disable_tqdm=True, train_sampling_strategy="sequential", save_strategy="no", logging_steps=1,
                  **overrides)
    trainer = Trainer(gpt2(), TrainingArguments(str(tmp_path / f"b{batch}x{accumulation}"), **values),
                      train_dataset=sequences(), data_collator=pad)
    trainer.train()
    return trainer


def by_hand() -> tuple[dict, float]:
    """One SGD step on the whole batch of 8 from the model's own loss (its mean over the shifted label tokens)."""
    model = gpt2()
    loss = model(**pad(sequences())).loss
    loss.backward()
    with torch.no_grad():
        return {n: p - LR * p.grad for n, p in model.named_parameters()}, loss.item()


def test_accumulation_and_batch_size_give_the_update_computed_by_hand(tmp_path):
    expected, loss = by_hand()
    for batch, accumulation in ((8, 1), (2, 4), (1, 8)):
        trainer = one_step(tmp_path, batch, accumulation)
        for name, value in trainer.model.named_parameters():
            torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=f"{batch}x{accumulation} {name}")
        logged = trainer.state.log_history[0]["loss"]
        assert logged == pytest.approx(loss, rel=1e-5)  # the step's own loss, comparable across settings


def test_the_mean_of_micro_batch_means_is_what_a_model_without_the_count_trains_on(tmp_path):
    """A model whose forward does not take num_items_in_batch keeps the mean of the micro-batches' means."""

    class OwnLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = gpt2()

        def forward(self, input_ids, attention_mask, labels):
            return {"loss": self.inner(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss}

    values = dict(per_device_train_batch_size=2, gradient_accumulation_steps=4, max_steps=1, optim="sgd",
                  learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=0.0, report_to="none",
                  disable_tqdm=True, train_sampling_strategy="sequential", save_strategy="no")
    trainer = Trainer(OwnLoss(), TrainingArguments(str(tmp_path), **values), train_dataset=sequences(),
                      data_collator=pad)
    trainer.train()
    model, data = gpt2(), sequences()
    means = [model(**pad(data[i:i + 2])).loss for i in range(0, 8, 2)]
    (sum(means) / 4).backward()
    for name, value in trainer.model.inner.named_parameters():
        p = dict(model.named_parameters())[name]
        torch.testing.assert_close(value, (p - LR * p.grad).detach(), rtol=1e-5, atol=1e-6)


def test_padding_free_packing_trains_and_evaluates_as_padding(tmp_path):
    """transformers' DataCollatorWithFlattening (one row, position_ids restarting per sequence, -100 at each
    sequence's first label): the same update as padding, and the same eval_loss."""
    expected, _ = by_hand()
    as_lists = [{k: v.tolist() for k, v in s.items()} for s in sequences()]
    values = dict(per_device_train_batch_size=2, gradient_accumulation_steps=4, max_steps=1, optim="sgd",
                  learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=0.0, report_to="none",
                  disable_tqdm=True, train_sampling_strategy="sequential", save_strategy="no",
                  per_device_eval_batch_size=3)
    packed = Trainer(gpt2(), TrainingArguments(str(tmp_path / "packed"), **values), train_dataset=as_lists,
                     eval_dataset=as_lists, data_collator=transformers.DataCollatorWithFlattening())
    padded = Trainer(gpt2(), TrainingArguments(str(tmp_path / "padded"), **values), train_dataset=sequences(),
                     eval_dataset=sequences(), data_collator=pad)
    assert packed.evaluate()["eval_loss"] == pytest.approx(padded.evaluate()["eval_loss"], rel=1e-5)
    packed.train()
    for name, value in packed.model.named_parameters():
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=1e-5, msg=name)
