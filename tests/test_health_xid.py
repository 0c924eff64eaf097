"""XID-driven verdicts: each catalogued XID raises its reason, latches, and clears when told."""

from __future__ import annotations

import msgspec
import pytest

from gputui.core.model import Action, Event, Level
from tests.test_health import Rig, codes, reason

# The catalogue's XIDs with the level each must give: (xid, level, action).
TABLE = [
    (13, Level.WARN, Action.RESTART_APP),
    (31, Level.WARN, Action.RESTART_APP),
    (43, Level.OK, Action.NONE),
    (45, Level.OK, Action.NONE),
    (48, Level.CRITICAL, Action.RESET_GPU),
    (61, Level.CRITICAL, Action.RESET_GPU),
    (62, Level.CRITICAL, Action.RESET_GPU),
    (63, Level.OK, Action.NONE),
    (64, Level.FAILED, Action.RMA),
    (74, Level.CRITICAL, Action.RESET_GPU),
    (79, Level.FAILED, Action.REBOOT_NODE),
    (92, Level.WARN, Action.NONE),
    (94, Level.WARN, Action.RESTART_APP),
    (95, Level.FAILED, Action.DRAIN),
    (119, Level.CRITICAL, Action.RESET_GPU),
    (120, Level.CRITICAL, Action.RESET_GPU),
    (121, Level.WARN, Action.NONE),
    (140, Level.FAILED, Action.RESET_GPU),
    (154, Level.WARN, Action.NONE),  # names no action: warn until the field is read
]


@pytest.mark.parametrize(("xid", "level", "action"), TABLE)
def test_xid_event_raises_its_reason(xid: int, level: Level, action: Action) -> None:
    rig = Rig()
    rig.event("xid", gpu=1, xid=xid)
    v = rig.step(slow=False)  # (a slow sample reading recovery action 0 would answer a 154)
    r = reason(v, f"xid_{xid}", 1)
    assert (r.level, r.action, r.latched) == (level, action, True)
    assert f"GPU1 XID {xid}" in r.text
    assert v.gpus[1].level is level
    assert f"xid_{xid}" not in codes(v, 0)  # only the GPU it names


@pytest.mark.parametrize(("xid", "level", "action"), TABLE)
def test_xid_reason_absent_without_the_event(xid: int, level: Level, action: Action) -> None:
    rig = Rig()
    rig.event("xid", gpu=1, xid=7 if xid != 7 else 8)  # another XID
    assert f"xid_{xid}" not in codes(rig.step(), 1)


def test_info_xids_are_recorded_at_ok() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=43)
    v = rig.step()
    assert v.gpus[0].level is Level.OK and codes(v) == {"xid_43"}


def test_unknown_xid_is_warn_with_its_number() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=999)
    r = reason(rig.step(), "xid_999")
    assert r.level is Level.WARN and "999" in r.text


def test_xid_79_does_not_turn_green_on_the_next_sample() -> None:
    rig = Rig()
    rig.event("xid", gpu=2, xid=79)
    for _ in range(5):
        v = rig.step()
        assert v.gpus[2].level is Level.FAILED and v.host.level is Level.FAILED


def test_repeated_xid_counts() -> None:
    rig = Rig()
    for _ in range(3):
        rig.event("xid", gpu=0, xid=13)
    assert "(3 times)" in reason(rig.step(), "xid_13").text


def test_clear_one_gpu_then_all() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=79)
    rig.event("xid", gpu=1, xid=48)
    rig.event("xid", gpu=None, xid=74)
    rig.health.clear(0)
    v = rig.step()
    assert "xid_79" not in codes(v) and "xid_48" in codes(v, 1)
    assert "xid_74" in {r.code for r in v.host.reasons}
    rig.health.clear()
    v = rig.step()
    assert v.host.level is Level.OK and v.host.reasons == ()


def test_counter_reset_clears_latches() -> None:
    rig = Rig()
    rig.step({0: {"ecc_corrected_volatile": 10}})
    rig.event("xid", gpu=0, xid=48)
    v = rig.step({0: {"ecc_corrected_volatile": 10, "ecc_uncorrected_volatile": 1}})
    assert {"xid_48", "ecc_uncorrectable"} <= codes(v)
    # After a reset the volatile counters start again from zero.
    v = rig.step({0: {"ecc_corrected_volatile": 0, "ecc_uncorrected_volatile": 0}})
    assert codes(v) == set()


def test_withdrawn_reset_recovery_action_means_reset() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=119)
    assert "recovery_action" in codes(rig.step({0: {"recovery_action": 1}}))
    assert codes(rig.step({0: {"recovery_action": 0}})) == set()


def test_uuid_change_starts_afresh() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=79)
    rig.step()
    replaced = msgspec.structs.replace(rig.hello.gpus[0], uuid="GPU-new")
    rig.hello = msgspec.structs.replace(rig.hello, gpus=[replaced, *rig.hello.gpus[1:]])
    assert codes(rig.step()) == set()


def test_unattributed_xid_is_a_host_reason_or_found_by_uuid() -> None:
    rig = Rig()
    rig.step()  # learns the UUIDs
    rig.event("xid", gpu=None, xid=62)
    rig.health.observe_event(Event(v=1, t=rig.t, kind="xid", uuid="GPU-3", xid=61), rig.t)
    v = rig.step()
    host = next(r for r in v.host.reasons if r.code == "xid_62")
    assert host.gpu is None and host.text.startswith("host XID 62")
    assert "xid_61" in codes(v, 3)


# -- XIDs with rate rules ----------------------------------------------------------------------


def test_xid_31_escalates_when_it_follows_one_gpu() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=31)
    rig.t += 3600
    rig.event("xid", gpu=0, xid=31)
    assert reason(rig.step(), "xid_31").level is Level.WARN
    rig.t += 3600
    rig.event("xid", gpu=0, xid=31)
    r = reason(rig.step(), "xid_31")
    assert r.level is Level.CRITICAL and r.action is Action.RESET_GPU and "suspect" in r.text


def test_xid_31_spread_over_days_stays_warn() -> None:
    rig = Rig()
    for _ in range(3):
        rig.event("xid", gpu=0, xid=31)
        rig.t += 25 * 3600
    assert reason(rig.step(), "xid_31").level is Level.WARN


def test_xid_63_rate() -> None:
    rig = Rig()
    for _ in range(11):  # 11 in a day: 0.46/h, under 0.5/h
        rig.event("xid", gpu=0, xid=63)
        rig.t += 600
    assert "xid_63_rate" not in codes(rig.step())
    rig.event("xid", gpu=0, xid=63)
    v = rig.step()
    r = reason(v, "xid_63_rate")
    assert r.level is Level.WARN and "12 row remaps" in r.text and v.gpus[0].level is Level.WARN
    assert "xid_63_rate" not in codes(rig.step(dt=25 * 3600))  # the window moved on
    assert "xid_63" in codes(rig.step())  # the XIDs themselves stay recorded


# -- XID 154 and the recovery-action field ----------------------------------------------------


def test_xid_154_takes_the_level_of_the_action_it_names() -> None:
    rig = Rig()
    text = "GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)"
    rig.event("xid", gpu=0, xid=154, text=text)
    r = reason(rig.step(slow=False), "xid_154")
    assert (r.level, r.action) == (Level.CRITICAL, Action.REBOOT_NODE)


def test_xid_154_released_when_field_reads_none_after_it() -> None:
    rig = Rig()
    rig.event("xid", gpu=0, xid=154, text="recovery action changed to 0x3 (Drain P2P)")
    assert "xid_154" in codes(rig.step({0: {"recovery_action": 3}}))
    assert codes(rig.step({0: {"recovery_action": 0}})) == set()


def test_xid_for_a_gpu_outside_the_inventory_shows_on_the_host() -> None:
    rig = Rig(n=2)
    rig.event("xid", gpu=5, xid=79)
    v = rig.step()
    assert v.host.level is Level.FAILED and "xid_79" in {r.code for r in v.host.reasons}
