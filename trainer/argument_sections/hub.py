"""The hub fields of ``TrainingArguments`` (``HubArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..argument_checks import HUB_STRATEGIES
from . import _help


@dataclass
class HubArguments:
    """Hub: pushing to the Hugging Face Hub."""

    push_to_hub: bool = field(
        default=False,
        metadata=_help("Push the model to the Hugging Face Hub as hub_strategy says (uploads run in the background)."),
    )
    hub_model_id: str | None = field(
        default=None, metadata=_help("Repo to push to, 'name' or 'namespace/name'; default: output_dir's name.")
    )
    hub_strategy: str = field(
        default="every_save",
        metadata=_help("What is pushed: 'end' (on save_model/push_to_hub), 'every_save' (the model at each save), "
                       "'checkpoint' (also the checkpoint as last-checkpoint/, resumable), 'all_checkpoints'.",
                       choices=HUB_STRATEGIES),
    )
    hub_token: str | None = field(
        default=None, repr=False,
        metadata=_help("Token for the Hub (default: huggingface_hub's, HF_TOKEN or `hf auth login`); never "
                       "printed nor saved."),
    )
    hub_private_repo: bool | None = field(
        default=None, metadata=_help("Create the repo private (default: the Hub's default for your account).")
    )
    hub_revision: str | None = field(default=None, metadata=_help("Branch to push to (created if missing)."))
    hub_always_push: bool = field(
        default=False,
        metadata=_help("Queue every push; by default a push asked for while the previous one runs is skipped."),
    )
