"""Write docs/arguments.md from the dataclasses' help: ``python docs/make_arguments.py`` (``--stdout`` prints it).

tests/test_docs.py fails when the page and the code disagree, so the reference follows the code.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer import TrainingArguments  # noqa: E402
from trainer.argparsing import arguments_markdown  # noqa: E402
from trainer.seq2seq import Seq2SeqTrainingArguments  # noqa: E402

HEADER = """# Training arguments

Generated from the help of each field (`python docs/make_arguments.py`); the same text is what
`trainforge args --help` and a script's `--help` print. Every argument is a `--name value` flag and a key of a
YAML/JSON config. Booleans take `--name` (true), `--name false`, and `--no_name` when true is the default.
Names, defaults and meanings follow the Hugging Face `TrainingArguments`; where they differ, the help says so
(see also [migrating.md](migrating.md)).

## TrainingArguments

"""

SEQ2SEQ = """
## Seq2SeqTrainingArguments

Everything above, plus:

"""


def sections() -> str:
    """One table per section of the fields (``trainer/argument_sections/``), in the dataclass's order."""
    parts = []
    import dataclasses

    for section in reversed([b for b in TrainingArguments.__bases__ if dataclasses.is_dataclass(b)]):
        title = section.__doc__.split(":")[0].split(".")[0].strip()
        parts.append(f"### {title}\n\n" + arguments_markdown(TrainingArguments, only=section))
    return "\n".join(parts)


def render() -> str:
    return (HEADER + sections() + SEQ2SEQ + arguments_markdown(Seq2SeqTrainingArguments, skip=TrainingArguments))


if __name__ == "__main__":
    text = render()
    if "--stdout" in sys.argv:
        sys.stdout.write(text)
    else:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "arguments.md"), "w") as f:
            f.write(text)
