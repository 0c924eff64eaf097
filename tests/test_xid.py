"""The XID catalogue and the recovery-action semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gputui.core.model import Action, Level
from gputui.core.xid import (
    APPLICATION_XIDS,
    RECOVERY_ACTIONS,
    XID_CATALOGUE,
    recovery_action,
    xid154_action,
    xid_info,
)

# NVIDIA's table: XID -> (level, action).
EXPECTED = {
    13: (Level.WARN, Action.RESTART_APP),
    31: (Level.WARN, Action.RESTART_APP),
    43: (Level.OK, Action.NONE),
    45: (Level.OK, Action.NONE),
    48: (Level.CRITICAL, Action.RESET_GPU),
    61: (Level.CRITICAL, Action.RESET_GPU),
    62: (Level.CRITICAL, Action.RESET_GPU),
    63: (Level.OK, Action.NONE),
    64: (Level.FAILED, Action.RMA),
    74: (Level.CRITICAL, Action.RESET_GPU),
    79: (Level.FAILED, Action.REBOOT_NODE),
    92: (Level.WARN, Action.NONE),
    94: (Level.WARN, Action.RESTART_APP),
    95: (Level.FAILED, Action.DRAIN),
    119: (Level.CRITICAL, Action.RESET_GPU),
    120: (Level.CRITICAL, Action.RESET_GPU),
    121: (Level.WARN, Action.NONE),
    140: (Level.FAILED, Action.RESET_GPU),
    154: (Level.WARN, Action.NONE),
}


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_catalogue_entry(code: int) -> None:
    info = xid_info(code)
    assert info.known and info.code == code and info.meaning and info.action_text
    assert (info.level, info.action) == EXPECTED[code]


def test_catalogue_covers_the_table_and_only_adds_application_xids() -> None:
    assert set(EXPECTED) <= set(XID_CATALOGUE)
    assert set(XID_CATALOGUE) - set(EXPECTED) <= APPLICATION_XIDS


def test_application_level_xids_follow_the_kubernetes_list() -> None:
    assert {c for c, i in XID_CATALOGUE.items() if i.application} == {13, 31, 43, 45, 68, 109}
    assert xid_info(68).level is Level.WARN and xid_info(109).level is Level.WARN
    assert not xid_info(79).application


@given(st.integers(min_value=0, max_value=10_000).filter(lambda c: c not in XID_CATALOGUE))
def test_unknown_xid_is_a_warning_that_shows_its_number(code: int) -> None:
    info = xid_info(code)
    assert not info.known and info.level is Level.WARN and str(code) in info.meaning


def test_recovery_actions() -> None:
    assert recovery_action(0).level is Level.OK
    assert {c: (r.level, r.action) for c, r in RECOVERY_ACTIONS.items() if c} == {
        1: (Level.CRITICAL, Action.RESET_GPU),
        2: (Level.CRITICAL, Action.REBOOT_NODE),
        3: (Level.CRITICAL, Action.DRAIN),
        4: (Level.CRITICAL, Action.DRAIN),
    }
    assert recovery_action(9).level is Level.CRITICAL and "9" in recovery_action(9).name


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)", 1),
        ("GPU recovery action changed from 0x1 (GPU Reset Required) to 0x2 (Node Reboot)", 2),
        ("recovery action changed from 0x0 (None) to 0x4 (Drain and Reset)", 4),
        ("recovery action changed from GPU Reset Required to None", 0),
        ("recovery action changed to Drain P2P", 3),
        ("recovery action changed to node reboot required", 2),
        ("", None),
        ("something else entirely", None),
    ],
)
def test_xid154_action_parses_the_new_action(text: str, code: int | None) -> None:
    assert xid154_action(text) == code
