"""The Trainer's publishing methods: the model card and ``push_to_hub`` (the uploads are in
``integrations/hub.py``, the card's text in ``integrations/model_card.py``)."""

from __future__ import annotations

import os


class HubMixin:
    """``model_card_text``, ``create_model_card`` and ``push_to_hub``; ``self.hub`` is the run's HubPusher."""

    def model_card_text(self, **kwargs) -> str:
        """The model card (README.md) of this run; ``kwargs``: finetuned_from, dataset, tasks, language,
        license, tags, model_name (remembered for later cards)."""
        from integrations.model_card import build_model_card

        self._card_kwargs.update(kwargs)
        card = dict(self._card_kwargs)
        default_name = self.hub.repo_id.split("/")[-1] if self.hub is not None else \
            os.path.basename(os.path.abspath(self.args.output_dir))
        name = card.pop("model_name", None) or default_name
        return build_model_card(self.args, self.state, name, num_processes=self.runtime.num_processes, **card)

    def create_model_card(self, **kwargs) -> None:
        """Write the model card as ``output_dir/README.md`` (main process), with the run's curves drawn
        into ``training_curves.png`` and embedded when matplotlib is installed."""
        if not self.is_world_process_zero():
            return
        os.makedirs(self.args.output_dir, exist_ok=True)
        import importlib.util

        from .run_files import CURVES_NAME, curves, plot_curves

        if importlib.util.find_spec("matplotlib") is not None and curves(self.state.log_history):
            plot_curves(self.state.log_history, os.path.join(self.args.output_dir, CURVES_NAME))
            kwargs.setdefault("curves_image", CURVES_NAME)
        with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(self.model_card_text(**kwargs))

    def push_to_hub(self, commit_message: str = "End of training", blocking: bool = True, **model_card_kwargs):
        """Save the model and its card to output_dir and push them to the Hub repo (``hub_model_id``).

        ``blocking=False`` returns at once with the upload's Future. Returns the commit id (or the
        Future); None on other processes than the main one.
        """
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        if self.hub is None:
            from integrations.hub import HubPusher

            self.hub = HubPusher(self.args)
        self.create_model_card(**model_card_kwargs)
        future = self.hub.push_folder(self.args.output_dir, self.model_card_text(), commit_message)
        if not blocking:
            return future
        failures = self.hub.wait()
        if failures and failures[-1].startswith(f"push_to_hub: the push {commit_message!r} failed"):
            raise RuntimeError(failures[-1])
        return future.result()
