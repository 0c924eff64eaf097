"""scripts/device_check.py compares memory as nvidia-smi counts it: used and reserved apart."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parent.parent / "scripts" / "device_check.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_an_idle_h200_agrees_with_nvidia_smi_on_used_and_reserved() -> None:
    check = load()
    # The agent reads NVML v2 (used 0, reserved 615.1); nvidia-smi prints 0 and 616.
    assert not check.field_differs("mem_used_mib", 0.0, 0.0)
    assert not check.field_differs("mem_reserved_mib", 615.1, 616.0)


def test_v1_used_or_a_reserved_reading_on_one_side_only_is_flagged() -> None:
    check = load()
    # NVML v1 counts the reserved memory as used: the disagreement the H200 showed.
    assert check.field_differs("mem_used_mib", 615.1, 0.0)
    assert check.field_differs("mem_reserved_mib", 615.1, None)
    assert check.field_differs("mem_reserved_mib", None, 616.0)
    assert not check.field_differs("mem_reserved_mib", None, None)
    # Other fields one side lacks (power on some boards) are shown, not flagged.
    assert not check.field_differs("power_w", None, 80.0)
