"""The generated part of a docs page, between two marker lines: replaced by the page's ``make_*.py`` script,
which ``--stdout`` prints instead (docs/make_errors.py, docs/make_compat.py)."""

from __future__ import annotations

import re
import sys


def updated(page: str, begin: str, end: str, part: str, path: str) -> str:
    """``page`` with what stands between the ``begin`` and ``end`` markers replaced by ``part``."""
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{path} has no markers: put {begin!r} and {end!r} where the generated part goes")
    return pattern.sub(lambda _: f"{begin}\n{part}{end}", page)


def write(path: str, begin: str, end: str, part: str) -> None:
    """Print ``part`` with ``--stdout``, else put it into the page at ``path``."""
    if "--stdout" in sys.argv:
        sys.stdout.write(part)
        return
    with open(path, encoding="utf-8") as f:
        page = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(updated(page, begin, end, part, path))
