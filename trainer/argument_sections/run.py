"""The run fields of ``TrainingArguments`` (``RunArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _help


@dataclass
class RunArguments:
    """Run: where it writes, what a script runs, its name and its seeds."""

    output_dir: str = field(
        default="trainer_output",
        metadata=_help("Where checkpoints, the final model and metrics files are written."),
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help(
            "Start over in an output_dir that already holds checkpoints (they are deleted when training "
            "starts). Without it, a run that does not resume trains beside them, with a warning."
        ),
    )
    do_train: bool = field(default=False, metadata=_help("Run training (read by scripts; train() always trains)."))
    do_eval: bool = field(
        default=False, metadata=_help("Run evaluation; set automatically when eval_strategy is not 'no'.")
    )
    do_predict: bool = field(default=False, metadata=_help("Run prediction on the test set (read by scripts)."))
    seed: int = field(default=42, metadata=_help("Seed set before the model is built and training starts."))
    full_determinism: bool = field(
        default=False,
        metadata=_help("Bitwise-reproducible runs: seed everything and make torch use deterministic algorithms only "
                       "(torch.use_deterministic_algorithms, cuDNN deterministic, CUBLAS_WORKSPACE_CONFIG set), "
                       "dataloader workers seeded from the seed. Slower on GPUs; an op with no deterministic "
                       "implementation raises."),
    )
    data_seed: int | None = field(
        default=None, metadata=_help("Seed of the data samplers' shuffling; defaults to seed.")
    )
    run_name: str | None = field(
        default=None, metadata=_help("Name of the run for logging backends; defaults to output_dir.")
    )
