"""The run's publishing to the Hugging Face Hub, a collaborator the Trainer holds (``trainer.publisher``):
the repo (created when the Trainer is built with ``push_to_hub``, so a bad token or name fails before
training), the pushes at each checkpoint, at ``save_model`` and at the end of training, and the model card.
The uploads are in ``integrations/hub.py``, the card's text in ``integrations/model_card.py``; the Trainer
keeps the public methods (``push_to_hub``, ``create_model_card``, ``model_card_text``).
"""

from __future__ import annotations

import os


class Publisher:
    def __init__(self, trainer):
        self.trainer = trainer
        self.hub = None  # integrations.hub.HubPusher: the repo and its background pushes (main process)
        self.push_failures: list[str] = []
        self.card_kwargs: dict = {}
        if trainer.args.push_to_hub and trainer.is_world_process_zero():
            self._open_repo()

    def _open_repo(self, token: str | None = None, private: bool | None = None):
        """The Hub repo (created if missing), with the arguments' token and visibility unless given."""
        if self.hub is None:
            import copy

            from integrations.hub import HubPusher

            trainer = self.trainer
            args = trainer.args
            if token is not None or private is not None:
                args = copy.copy(args)
                args.hub_token = token if token is not None else args.hub_token
                args.hub_private_repo = private if private is not None else args.hub_private_repo
            self.hub = HubPusher(args, before_push=lambda: trainer.callback_handler.on_push_begin(
                trainer.args, trainer.state, trainer.control))
        return self.hub

    # -- the events of a run that push --------------------------------------------------
    def checkpoint_saved(self, path: str) -> None:
        """A checkpoint was saved: pushed as ``hub_strategy`` says."""
        if self.hub is not None:
            trainer = self.trainer
            trainer.checkpoint_writer.wait()  # the push uploads the finished folder
            self.hub.on_checkpoint(path, trainer.state.global_step, self.model_card_text())

    def model_saved(self, output_dir: str) -> None:
        """``save_model()`` into output_dir with push_to_hub: the model and its card, in the background."""
        if self.hub is not None:
            self.create_model_card()
            self.hub.push_folder(output_dir, self.model_card_text(), "Model save")

    def training_ended(self) -> None:
        """The end of ``train()``: the last push (with the newest checkpoint), waited for; failures are kept in
        ``push_failures``."""
        if self.hub is not None:
            from .checkpoint import list_checkpoints

            trainer = self.trainer
            newest = list_checkpoints(trainer.args.output_dir)
            self.push_failures = self.hub.finish_training(newest[-1] if newest else None, trainer.state.global_step,
                                                          self.model_card_text())

    # -- the Trainer's public methods ---------------------------------------------------
    def model_card_text(self, **kwargs) -> str:
        from integrations.model_card import build_model_card

        trainer = self.trainer
        self.card_kwargs.update(kwargs)
        card = dict(self.card_kwargs)
        default_name = self.hub.repo_id.split("/")[-1] if self.hub is not None else \
            os.path.basename(os.path.abspath(trainer.args.output_dir))
        name = card.pop("model_name", None) or default_name
        return build_model_card(trainer.args, trainer.state, name, num_processes=trainer.runtime.num_processes, **card)

    def create_model_card(self, **kwargs) -> None:
        trainer = self.trainer
        if not trainer.is_world_process_zero():
            return
        os.makedirs(trainer.args.output_dir, exist_ok=True)
        import importlib.util

        from .run_files import CURVES_NAME, curves, plot_curves

        if importlib.util.find_spec("matplotlib") is not None and curves(trainer.state.log_history):
            plot_curves(trainer.state.log_history, os.path.join(trainer.args.output_dir, CURVES_NAME))
            kwargs.setdefault("curves_image", CURVES_NAME)
        with open(os.path.join(trainer.args.output_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(self.model_card_text(**kwargs))

    def push_to_hub(self, commit_message: str, blocking: bool, **model_card_kwargs):
        trainer = self.trainer
        trainer.save_model(_internal_call=True)
        if not trainer.is_world_process_zero():
            return None
        hub = self._open_repo()
        self.create_model_card(**model_card_kwargs)
        future = hub.push_folder(trainer.args.output_dir, self.model_card_text(), commit_message)
        if not blocking:
            return future
        failures = hub.wait()
        if failures and failures[-1].startswith(f"push_to_hub: the push {commit_message!r} failed"):
            raise RuntimeError(failures[-1])
        return future.result()
