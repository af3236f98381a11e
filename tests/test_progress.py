"""model/progress.py: bars only on a terminal and only when SIMGR_NO_PROGRESS does not turn them off;
``silence`` turns them off for a benchmark unless the variable is already set."""

from __future__ import annotations

import os

import pytest

from model import progress


@pytest.mark.parametrize(("value", "shown"), [("1", False), ("TRUE", False), (" on ", False), ("0", True),
                                              ("", True)])
def test_bars_follow_simgr_no_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch, value: str,
                                                     shown: bool) -> None:
    monkeypatch.setenv("SIMGR_NO_PROGRESS", value)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert progress.enabled() is shown


def test_no_bars_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMGR_NO_PROGRESS", "0")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress.enabled() is False


def test_silence_sets_the_variable_only_where_it_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMGR_NO_PROGRESS", raising=False)
    progress.silence()
    assert os.environ["SIMGR_NO_PROGRESS"] == "1"
    monkeypatch.setenv("SIMGR_NO_PROGRESS", "0")  # the user asked for bars
    progress.silence()
    assert os.environ["SIMGR_NO_PROGRESS"] == "0"
