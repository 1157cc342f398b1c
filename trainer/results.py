"""The results files and tables of the example scripts' habits: ``log_metrics`` prints an aligned table,
``save_metrics`` writes ``{split}_results.json`` and merges it into ``all_results.json``."""

from __future__ import annotations

import json
import os

from .checkpoint import write_json


def format_metrics(split: str, metrics: dict) -> str:
    """``***** {split} metrics *****`` and one aligned ``key = value`` line per metric, sorted by key."""
    width = max((len(k) for k in metrics), default=0)
    lines = [f"***** {split} metrics *****"]
    for key in sorted(metrics):
        value = metrics[key]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}} = {shown:>12}")
    return "\n".join(lines)


def write_results(output_dir: str, split: str, metrics: dict, combined: bool = True) -> None:
    """``{split}_results.json``, and with ``combined`` the metrics merged into ``all_results.json``."""
    os.makedirs(output_dir, exist_ok=True)
    write_json(os.path.join(output_dir, f"{split}_results.json"), metrics)
    if combined:
        path = os.path.join(output_dir, "all_results.json")
        merged = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                merged = json.load(f)
        merged.update(metrics)
        write_json(path, merged)
