"""One training script for every launcher and engine (torchrun, the deepspeed launcher, plain python).

--engine ddp | deepspeed | fairscale | fsdp picks the TrainingArguments that select the engine;
--mode straight: train to the end; cut: stop at --stop_at with a checkpoint; resume: continue
from the newest checkpoint. --lora wraps the model in a PEFT LoRA adapter on its hidden layer (the adapter trains,
the rest is frozen). The main process writes ``log_history`` to --output_dir/history.json
and saves the final model to --final. ``--local_rank`` is accepted (the deepspeed launcher passes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from tests.fixtures import RegressionDataset  # noqa: E402
from trainer import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

WIDTH = 16
GRAD_FORWARDS = [0]  # forwards of the hidden layer with autograd on: training ones, and their recompute in backward


class WideRegression(nn.Module):
    """An MLP with dropout, wide enough that ZeRO-3 partitions its weights (config.hidden_size=WIDTH)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=WIDTH)
        self.net = nn.Sequential(nn.Linear(1, WIDTH), nn.ReLU(), nn.Dropout(0.1), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                                 nn.Linear(WIDTH, 1))

    def forward(self, input_x, labels=None):
        y = self.net(input_x.unsqueeze(-1)).squeeze(-1)
        return {"loss": nn.functional.mse_loss(y, labels), "logits": y}


def counted_regression():
    model = WideRegression()

    def count(module, inputs, output):
        if torch.is_grad_enabled():
            GRAD_FORWARDS[0] += 1

    model.net[3].register_forward_hook(count)
    return model


class StopAt(TrainerCallback):
    def __init__(self, stop_at: int | None):
        self.stop_at = stop_at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.stop_at:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):  # after the save: the run looks killed, not ended
        if state.global_step == self.stop_at:
            control.should_training_stop = True


class Config(dict):
    """A config peft's model card can read (a mapping) that DeepSpeed's 'auto' values read too (attributes)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def lora_regression():
    import peft

    model = WideRegression()
    model.config = Config(hidden_size=WIDTH)
    return peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["net.3"], lora_dropout=0.1))


def engine_arguments(engine: str, ds_config: str | None, fsdp_state: str, fsdp_recompute: bool = False) -> dict:
    if engine == "deepspeed":
        return {"deepspeed": ds_config}
    if engine == "fairscale":
        return {"sharded_ddp": "simple"}
    if engine == "fairscale_fsdp":  # CUDA only
        return {"sharded_ddp": "zero_dp_3"}
    if engine == "fsdp":
        return {"fsdp": "full_shard", "fsdp_config": {"min_num_params": 100, "state_dict_type": fsdp_state,
                                                      "activation_checkpointing": fsdp_recompute}}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--final", default=None)
    parser.add_argument("--engine", choices=["ddp", "deepspeed", "fairscale", "fairscale_fsdp", "fsdp"], default="ddp")
    parser.add_argument("--ds_config", default=None)
    parser.add_argument("--fsdp_state", default="full")
    parser.add_argument("--fsdp_recompute", action="store_true", help="fsdp_config['activation_checkpointing']")
    parser.add_argument("--mode", choices=["straight", "cut", "resume"], default="straight")
    parser.add_argument("--stop_at", type=int, default=None)
    parser.add_argument("--max_steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--notebook", action="store_true", help="set a one-process environment first")
    parser.add_argument("--local_rank", type=int, default=-1)
    parser.add_argument("--lora", action="store_true")
    opts = parser.parse_args()
    if opts.notebook:
        from integrations.deepspeed import setup_single_process_distributed

        setup_single_process_distributed()
    torch.set_num_threads(1)
    args = TrainingArguments(
        output_dir=opts.output_dir, max_steps=opts.max_steps, per_device_train_batch_size=opts.batch,
        gradient_accumulation_steps=opts.accum, learning_rate=0.01, warmup_steps=opts.warmup_steps,
        weight_decay=0.01, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=7, report_to="none",
        **engine_arguments(opts.engine, opts.ds_config, opts.fsdp_state, opts.fsdp_recompute),
    )
    trainer = Trainer(model_init=lora_regression if opts.lora else counted_regression, args=args, train_dataset=RegressionDataset(96),
                      callbacks=[StopAt(opts.stop_at if opts.mode == "cut" else None)])
    trainer.train(resume_from_checkpoint=True if opts.mode == "resume" else None)
    # 37 samples in batches of 8 over 2 processes: one rank's last batch is partly padding, so it runs an
    # extra forward for the loss of its real samples (the other rank joins in when the forward is collective)
    eval_loss = trainer.evaluate(RegressionDataset(37, seed=3))["eval_loss"] if opts.mode != "cut" else None
    if trainer.is_world_process_zero():
        os.makedirs(opts.output_dir, exist_ok=True)
        with open(os.path.join(opts.output_dir, f"history-{opts.mode}.json"), "w") as f:
            json.dump({"log_history": trainer.state.log_history, "world_size": args.world_size,
                       "strategy": trainer.runtime.strategy.name, "eval_loss": eval_loss,
                       "grad_forwards": GRAD_FORWARDS[0]}, f)
    if opts.final and opts.mode != "cut":
        trainer.save_model(opts.final)


if __name__ == "__main__":
    main()
