"""Every row of docs/errors.md: the bad input raises the documented error type with the documented text."""

from __future__ import annotations

import os
import sys

import pytest

from tests.error_cases import CASES, LoggedWarning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def error_text(error: BaseException) -> str:
    """The message and its notes, as a traceback prints them."""
    return "\n".join([str(error), *getattr(error, "__notes__", ())])


@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}-{c.area}" for i, c in enumerate(CASES, 1)])
def test_bad_input_gets_its_documented_error(case, tmp_path, caplog):
    if case.error is LoggedWarning:
        with caplog.at_level("WARNING", logger="trainer"):
            case.trigger(tmp_path)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any(case.message in text for text in warned), warned
        return
    with pytest.raises(case.error) as info:
        case.trigger(tmp_path)
    assert case.message in error_text(info.value)


def test_there_are_at_least_30_documented_errors():
    assert len(CASES) >= 30


def test_errors_page_lists_every_case():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    try:
        import make_errors
    finally:
        sys.path.pop(0)
    with open(make_errors.PAGE, encoding="utf-8") as f:
        page = f.read()
    assert make_errors.updated(page, make_errors.render()) == page, \
        "docs/errors.md is stale: run python docs/make_errors.py"
