"""docs/compat.md's generated part is what docs/make_compat.py writes for the installed transformers, and every
difference it lists has its reason."""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("transformers")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def make_compat():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    try:
        import make_compat
    finally:
        sys.path.pop(0)
    return make_compat


def test_every_difference_has_its_reason(make_compat):
    assert make_compat.missing_reasons() == []


def test_the_page_is_current(make_compat):
    with open(make_compat.PAGE, encoding="utf-8") as f:
        page = f.read()
    assert make_compat.updated(page, make_compat.render()) == page, "docs/compat.md is stale: run python docs/make_compat.py"
