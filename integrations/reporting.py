"""Resolution of ``TrainingArguments.report_to`` into logging-backend callbacks.

A backend is listed by name with the package it needs and the ``module:Class`` of its
callback. The callback module is imported only when a run reports to it.
"""

from __future__ import annotations

import importlib
import importlib.util

# name -> (package that must be importable, "module:CallbackClass")
REPORTING_INTEGRATIONS: dict[str, tuple[str, str]] = {}


def resolve_report_to(report_to) -> list[str]:
    """Normalize ``report_to`` ("none", "all", a name or a list) into a list of backend names.

    Raises ValueError naming unknown backends and the valid ones.
    """
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return [n for n, (pkg, _) in REPORTING_INTEGRATIONS.items() if importlib.util.find_spec(pkg) is not None]
    unknown = [n for n in names if n not in REPORTING_INTEGRATIONS]
    if unknown:
        valid = ", ".join(["none", "all", *REPORTING_INTEGRATIONS])
        raise ValueError(f"report_to={report_to!r}: unknown backend(s) {unknown}; choose from: {valid}")
    return names


def reporting_callbacks(report_to) -> list:
    """Callback classes for the resolved ``report_to`` backends, imported lazily."""
    classes = []
    for name in resolve_report_to(report_to):
        package, target = REPORTING_INTEGRATIONS[name]
        if importlib.util.find_spec(package) is None:
            raise ImportError(f"report_to includes {name!r} but {package!r} is not installed: pip install {package}")
        module_name, class_name = target.split(":")
        classes.append(getattr(importlib.import_module(module_name), class_name))
    return classes
