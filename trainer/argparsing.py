"""Command-line flags and config files for dataclasses: TrainingArguments and a script's own.

``DataclassArgumentParser([ModelArguments, TrainingArguments]).parse(argv)`` returns one instance
per dataclass. Values come, lowest priority first, from the dataclasses' defaults, ``defaults=``,
a config file (``--config FILE`` or a lone ``.yaml``/``.yml``/``.json`` argument), then the flags.

| field type | flag |
|---|---|
| ``bool`` | ``--name`` (true), ``--name false``, and ``--no_name`` |
| ``int`` / ``float`` / ``str`` | ``--name VALUE`` |
| ``list[...]`` | ``--name A B C`` |
| ``Literal[...]``, an ``Enum`` or ``metadata["choices"]`` | ``--name CHOICE``, checked against the choices |
| ``bool | str`` | ``--name`` (true), ``--name false`` or ``--name MODE`` |

Help text is the field's ``metadata["help"]``. A config key that no dataclass has is an error
naming the key and the closest valid one. Every mistake in a config or in the values (a key, a type,
the file, a value the dataclass refuses) is a ``ConfigError`` naming the key and the file; from the
command line (``parse()`` reading ``sys.argv``, and the ``trainforge`` subcommands) it is one line
on stderr and exit status 2, as argparse does for a bad flag. Our own small parser rather than jsonargparse or tyro:
it is ~150 lines over argparse, keeps HF's flag names and ``--no_x`` spelling exactly, reads the
help from the same ``metadata["help"]`` HF scripts already use, and adds no dependency.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import os
import sys
import typing
from typing import Any

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class ConfigError(ValueError):
    """A config file or argument value that cannot make the dataclasses: the message names the key and
    the file."""


class ConfigFileMissing(ConfigError, FileNotFoundError):
    """``--config FILE`` names no file."""


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _bool_or_str(value: str | bool) -> bool | str:
    try:
        return str2bool(value)
    except argparse.ArgumentTypeError:
        return value


def _choices_of(hint: Any, metadata) -> list | None:
    if metadata.get("choices"):
        return list(metadata["choices"])
    for arg in [hint, *typing.get_args(hint)]:
        if typing.get_origin(arg) is typing.Literal:
            return list(typing.get_args(arg))
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [member.value for member in arg]
    return None


def flag_options(hint: Any, metadata=None) -> dict:
    """argparse options for a field's type hint."""
    metadata = metadata or {}
    if typing.get_origin(hint) in (list, typing.Literal):
        args = [hint]
    else:  # a union: its members without None
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    choices = _choices_of(hint, metadata)
    if bool in args:
        if str in args:  # True/False or a mode name, e.g. include_num_input_tokens_seen
            return {"type": _bool_or_str, "nargs": "?", "const": True}
        return {"type": str2bool, "nargs": "?", "const": True, "metavar": "BOOL"}
    if any(typing.get_origin(a) is list for a in args):
        inner = next(typing.get_args(a) for a in args if typing.get_origin(a) is list)
        item = inner[0] if inner and inner[0] in (int, float, str) else str
        return {"nargs": "+", "type": item}
    if choices is not None:
        kind = type(choices[0]) if choices and all(type(c) is type(choices[0]) for c in choices) else str
        return {"type": kind, "choices": choices}
    if int in args and float not in args:
        return {"type": int}
    if float in args:
        return {"type": float}
    return {"type": str}


class DataclassArgumentParser(argparse.ArgumentParser):
    """An argparse parser with one flag per field of each dataclass; ``parse`` returns the instances."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)
        self.dataclass_types = list(dataclass_types) if isinstance(dataclass_types, (list, tuple)) else \
            [dataclass_types]
        self.add_argument("--config", default=argparse.SUPPRESS,
                          help="YAML or JSON file of argument values (flags given here override it); a lone "
                               "CONFIG.yaml/.json argument works too.")
        self.owner: dict[str, type] = {}
        self.options: dict[str, dict] = {}  # each field's argparse options: how a config value is checked
        self.enums: dict[str, type] = {}  # fields typed with an Enum: their values become members
        for cls in self.dataclass_types:
            self._add_dataclass(cls)

    def _add_dataclass(self, cls) -> None:
        hints = typing.get_type_hints(cls)
        group = self.add_argument_group(cls.__name__)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in self.owner:
                raise ValueError(f"{cls.__name__}.{f.name} and {self.owner[f.name].__name__}.{f.name} would both be "
                                 f"--{f.name}: rename one of the fields")
            self.owner[f.name] = cls
            enum_type = next((a for a in [hints[f.name], *typing.get_args(hints[f.name])]
                              if isinstance(a, type) and issubclass(a, enum.Enum)), None)
            if enum_type is not None:
                self.enums[f.name] = enum_type
            options = flag_options(hints[f.name], f.metadata)
            self.options[f.name] = options
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            help_text = f.metadata.get("help", "")
            group.add_argument(f"--{f.name}", default=argparse.SUPPRESS,
                               help=f"{help_text} (default: {default})".replace("%", "%%"), **options)
            if options.get("type") is str2bool and default is True:
                group.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", default=argparse.SUPPRESS,
                                   help=f"Set {f.name} to false.")

    # -- parsing -------------------------------------------------------------------------------
    def parse(self, argv: list[str] | None = None, defaults: dict | None = None, ignore: tuple = ()) -> tuple:
        """One instance per dataclass, from defaults < config file < flags. Config keys in ``ignore`` are
        left out (``task`` of a ``trainforge train`` config). A mistake raises ``ConfigError``; reading
        ``sys.argv`` (``argv=None``) it ends the program as a bad flag does: one line, exit status 2."""
        if argv is not None:
            return self._parse(list(argv), defaults, ignore)
        try:
            return self._parse(sys.argv[1:], defaults, ignore)
        except ConfigError as error:  # argparse's error() would print the usage of every flag first
            self.exit(2, f"{self.prog}: error: {error}\n")

    def _parse(self, argv: list[str], defaults: dict | None, ignore: tuple) -> tuple:
        if argv and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-"):
            argv = ["--config", argv[0], *argv[1:]]
        given = vars(self.parse_args(argv))
        values = dict(defaults or {})
        config = given.pop("config", None)
        if config:
            read = {k: v for k, v in self.read_config(config).items() if k not in ignore}
            values.update(self.typed_config(read, config))
        values.update(given)
        self._check_keys(values, config)
        for name, enum_type in self.enums.items():
            if name in values and not isinstance(values[name], enum.Enum):
                values[name] = enum_type(values[name])
        out = []
        for cls in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            mine = {k: v for k, v in values.items() if k in names}
            try:
                out.append(cls.from_dict(mine) if hasattr(cls, "from_dict") else cls(**mine))
            except (ValueError, TypeError) as error:  # the dataclass's own checks refused a value
                if isinstance(error, ConfigError):
                    raise
                where = f" (the values of {config} and the flags)" if config else ""
                raise ConfigError(f"{' '.join(str(error).split())}{where}") from error
        return tuple(out)

    @staticmethod
    def read_config(path: str) -> dict:
        if not os.path.isfile(path):
            raise ConfigFileMissing(f"--config {path!r}: no such file")
        with open(path, encoding="utf-8") as f:
            if path.endswith((".yaml", ".yml")):
                import yaml

                try:
                    data = yaml.safe_load(f) or {}
                except yaml.YAMLError as e:
                    raise ConfigError(f"--config {path!r} is not valid YAML: {' '.join(str(e).split())}") from None
            else:
                try:
                    data = json.load(f)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"--config {path!r} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config {path!r} must hold a mapping of argument names to values, got "
                             f"{type(data).__name__}")
        return data

    def typed_config(self, data: dict, path: str) -> dict:
        """Config values checked against their fields as flags are: numbers and booleans written as strings
        are converted (YAML reads ``1e-4`` as a string), a value of the wrong type or outside the choices is an
        error naming the key."""
        out = {}
        for key, value in data.items():
            options = self.options.get(key)
            if options is None or value is None:  # unknown keys are reported by _check_keys
                out[key] = value
                continue
            kind, choices = options.get("type"), options.get("choices")
            expected = {int: "an integer", float: "a number", str2bool: "true or false"}.get(kind)
            if expected and options.get("nargs") != "+":
                ok = isinstance(value, bool) if kind is str2bool else (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and
                    (kind is float or float(value).is_integer()))
                if not ok:
                    try:
                        value = kind(value) if isinstance(value, str) else None
                    except (ValueError, argparse.ArgumentTypeError):
                        value = None
                    if value is None:
                        raise ConfigError(f"{key}: {data[key]!r} in {path} is not {expected}")
                elif kind is int:
                    value = int(value)
            if choices is not None and not isinstance(value, list) and value not in choices:
                raise ConfigError(f"{key}: {value!r} in {path} is not one of {choices}")
            out[key] = value
        return out

    def _check_keys(self, values: dict, config: str | None) -> None:
        unknown = [k for k in values if k not in self.owner]
        if not unknown:
            return
        where = f" in {config}" if config else ""
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(self.owner), n=1)
            parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        names = ", ".join(cls.__name__ for cls in self.dataclass_types)
        raise ConfigError(f"unknown argument(s){where}: {', '.join(parts)}; valid names are the fields of {names} "
                         "(see --help)")


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def arguments_markdown(cls, skip: type | None = None, only: type | None = None) -> str:
    """A Markdown table of a dataclass's fields (flag, type, default, help); fields that ``skip`` (a base
    class) has are left out, and with ``only`` (a section of the fields) the others are.
    ``docs/arguments.md`` is made of these, so it follows the code."""
    hints = typing.get_type_hints(cls)
    inherited = {f.name for f in dataclasses.fields(skip)} if skip else set()
    section = {f.name for f in dataclasses.fields(only)} if only else None
    rows = ["| argument | type | default | what it does |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.init or f.name in inherited or (section is not None and f.name not in section):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        choices = _choices_of(hints[f.name], f.metadata)
        kind = "one of " + ", ".join(f"`{c}`" for c in choices) if choices else f"`{_type_name(hints[f.name])}`"
        cells = [f"`--{f.name}`", kind, f"`{default!r}`",
                 " ".join(f.metadata.get("help", "").split())]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
