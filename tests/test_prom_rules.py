"""`gputui rules`: alerting rules that promtool accepts, for every critical reason and XID."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gputui.core.model import Level
from gputui.core.reasons import REASON_CODES
from gputui.core.xid import XID_CATALOGUE
from gputui.render.prom_rules import dcgm_rules, gputui_rules, rule_xids
from tests.conftest import need_program


def _rules_text(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gputui.cli", "rules", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.system
@pytest.mark.parametrize("args", [[], ["--for-dcgm"]])
def test_promtool_checks_the_rules(args: list[str], tmp_path: Path) -> None:
    promtool = need_program("promtool")
    path = tmp_path / "gputui.rules.yml"
    path.write_text(_rules_text(*args))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(rules) for _, rules in (dcgm_rules() if args else gputui_rules()))
    assert f"SUCCESS: {count} rules found" in done.stdout


def test_every_critical_xid_and_reason_has_a_rule() -> None:
    xids = set(rule_xids())
    assert {79, 48, 64, 94, 95, 154} <= xids
    assert {c for c, i in XID_CATALOGUE.items() if i.level >= Level.CRITICAL} <= xids
    alerts = {r.alert: r for _, rules in gputui_rules() for r in rules}
    for code, (level, _) in REASON_CODES.items():
        name = "Gputui" + "".join(p.title() for p in code.split("_"))
        assert (name in alerts) is (level >= Level.CRITICAL), code
    assert alerts["GputuiXid79"].action == XID_CATALOGUE[79].action_text
    assert alerts["GputuiHwThermal"].expr.startswith('gputui_gpu_reason_info{code="hw_thermal"}')
    assert {"GputuiHostUnreachable", "GputuiHostStale", "GputuiHostVerdictCritical"} <= set(alerts)
    dcgm = {r.alert: r for _, rules in dcgm_rules() for r in rules}
    assert dcgm["DcgmXid79"].expr == "DCGM_FI_DEV_XID_ERRORS == 79"
    assert dcgm["DcgmRemapFailure"].expr == "DCGM_FI_DEV_ROW_REMAP_FAILURE > 0"
    assert dcgm["DcgmHwThermal"].expr == "floor(DCGM_FI_DEV_CLOCKS_EVENT_REASONS / 64) % 2 == 1"


def test_the_rules_text_carries_nvidia_action() -> None:
    text = _rules_text()
    assert 'nvidia_action: "reboot node"' in text
    assert "reboot or power-cycle the node; RMA if it recurs" in text


PROMTOOL_TEST = Path(__file__).parent / "fixtures" / "promtool_rules_test.yml"


@pytest.mark.system
def test_the_rules_fire_on_the_series_they_read(tmp_path: Path) -> None:
    """promtool evaluates the rules over made-up series: the alerts that must fire do, with
    NVIDIA's action, and the power cap alone or an earlier XID raise nothing."""
    promtool = need_program("promtool")
    gputui = tmp_path / "gputui.yml"
    gputui.write_text(_rules_text())
    dcgm = tmp_path / "dcgm.yml"
    dcgm.write_text(_rules_text("--for-dcgm"))
    tests = tmp_path / "tests.yml"
    text = PROMTOOL_TEST.read_text()
    tests.write_text(text.replace("GPUTUI_RULES", str(gputui)).replace("DCGM_RULES", str(dcgm)))
    done = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
