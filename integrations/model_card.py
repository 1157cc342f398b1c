"""The model card (README.md) written with a pushed or saved model, generated from the run.

| section | from |
|---|---|
| YAML header: ``library_name``, ``tags``, ``base_model``, ``datasets``, ``license``, ``language`` | the keyword arguments (``finetuned_from``, ``dataset``...) |
| results on the evaluation set | the last evaluation in ``state.log_history`` |
| training hyperparameters | the TrainingArguments (learning rate, batch sizes, seed, optimizer, schedule, precision...) |
| training results table: Training Loss, Epoch, Step, Validation Loss, each eval metric | every evaluation in ``state.log_history``, with the training loss logged last before it |
| the training curves | ``curves_image`` (``training_curves.png``, drawn by ``trainforge plot`` / ``create_model_card``) |
| framework versions | trainforge, PyTorch, and transformers / datasets / tokenizers when installed |

Secrets (tokens) never enter the card: only the fields listed here are read.
"""

from __future__ import annotations

import importlib.metadata

_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")
_FRAMEWORKS = (("trainforge", "trainforge"), ("PyTorch", "torch"), ("Transformers", "transformers"),
               ("Datasets", "datasets"), ("Tokenizers", "tokenizers"))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _title(key: str) -> str:
    return " ".join(word.capitalize() for word in key.split("_"))


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def results_table(log_history: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows: one row per evaluation, with the training loss logged last before it."""
    rows, columns = [], ["Training Loss", "Epoch", "Step", "Validation Loss"]
    last_loss = None
    for entry in log_history:
        if "loss" in entry:
            last_loss = entry["loss"]
        if "eval_loss" not in entry:
            continue
        row = {"Training Loss": _number(last_loss) if last_loss is not None else "No log",
               "Epoch": _number(entry.get("epoch", "")), "Step": str(entry.get("step", "")),
               "Validation Loss": _number(entry["eval_loss"])}
        for key, value in entry.items():
            if key.startswith("eval_") and key != "eval_loss" and not key.endswith(_SPEED_SUFFIXES):
                name = _title(key[len("eval_"):])
                row[name] = _number(value)
                if name not in columns:
                    columns.append(name)
        rows.append(row)
    return columns, [[row.get(c, "") for c in columns] for row in rows]


def hyperparameters(args, num_processes: int = 1) -> dict:
    values = {
        "learning_rate": args.learning_rate,
        "train_batch_size": args.per_device_train_batch_size,
        "eval_batch_size": args.per_device_eval_batch_size,
        "seed": args.seed,
    }
    if num_processes > 1:
        values["num_processes"] = num_processes
    if args.gradient_accumulation_steps > 1:
        values["gradient_accumulation_steps"] = args.gradient_accumulation_steps
    total = args.per_device_train_batch_size * args.gradient_accumulation_steps * num_processes
    if total != args.per_device_train_batch_size:
        values["total_train_batch_size"] = total
    values["optimizer"] = (f"{args.optim} with betas=({args.adam_beta1},{args.adam_beta2}), "
                           f"epsilon={args.adam_epsilon}, weight_decay={args.weight_decay}")
    values["lr_scheduler_type"] = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if args.warmup_steps:
        values["lr_scheduler_warmup_steps"] = args.warmup_steps
    elif args.warmup_ratio:
        values["lr_scheduler_warmup_ratio"] = args.warmup_ratio
    if args.max_steps > 0:
        values["training_steps"] = args.max_steps
    else:
        values["num_epochs"] = args.num_train_epochs
    if args.fp16 or args.bf16:
        values["mixed_precision_training"] = "fp16" if args.fp16 else "bf16"
    if args.label_smoothing_factor:
        values["label_smoothing_factor"] = args.label_smoothing_factor
    return values


def _yaml_list(name: str, values) -> list[str]:
    if not values:
        return []
    values = [values] if isinstance(values, str) else list(values)
    return [f"{name}:"] + [f"- {v}" for v in values]


def build_model_card(args, state, model_name: str, *, num_processes: int = 1, finetuned_from: str | None = None,
                     dataset: str | list[str] | None = None, tasks: str | list[str] | None = None,
                     language: str | list[str] | None = None, license: str | None = None,
                     tags: str | list[str] | None = None, curves_image: str | None = None) -> str:
    """The README.md text of a model trained by this run."""
    tag_list = ["trainforge", "generated_from_trainer"] + ([tags] if isinstance(tags, str) else list(tags or []))
    header = ["---", "library_name: trainforge"]
    if license:
        header.append(f"license: {license}")
    if finetuned_from:
        header.append(f"base_model: {finetuned_from}")
    header += _yaml_list("tags", tag_list) + _yaml_list("datasets", dataset) + _yaml_list("language", language)
    header += ["---", ""]
    lines = header + [f"# {model_name}", ""]
    origin = f"a fine-tuned version of [{finetuned_from}](https://huggingface.co/{finetuned_from})" \
        if finetuned_from else "a model"
    data = f" on the {', '.join([dataset] if isinstance(dataset, str) else dataset)} dataset" if dataset else ""
    lines.append(f"This is {origin} trained with trainforge{data}.")
    if tasks:
        lines.append(f"Task: {', '.join([tasks] if isinstance(tasks, str) else tasks)}.")
    evals = [e for e in state.log_history if "eval_loss" in e]
    if evals:
        lines += ["", "It achieves the following results on the evaluation set:"]
        for key, value in evals[-1].items():
            if key.startswith("eval_") and not key.endswith(_SPEED_SUFFIXES):
                lines.append(f"- {_title(key[len('eval_'):])}: {_number(value)}")
    lines += ["", "## Training hyperparameters", "", "The following hyperparameters were used during training:"]
    lines += [f"- {k}: {v}" for k, v in hyperparameters(args, num_processes).items()]
    columns, rows = results_table(state.log_history)
    if rows:
        lines += ["", "## Training results", "", "| " + " | ".join(columns) + " |",
                  "|" + "|".join(":---:" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    if curves_image:
        lines += ["", f"![Training curves: loss, learning rate, grad norm and evaluation metrics]({curves_image})"]
    lines += ["", "## Framework versions", ""]
    for label, package in _FRAMEWORKS:
        version = _version(package)
        if version is not None:
            lines.append(f"- {label} {version}")
    return "\n".join(lines) + "\n"
