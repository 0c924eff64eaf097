"""Facts about the host itself for triage: uptime, kernel, OS, account, and the PCI bus.

The PCI bus is read from sysfs, not from NVML, because it answers what NVML cannot: a GPU the
driver failed to initialise is on the bus but absent from NVML's count, and a GPU that fell off
the bus still has its sysfs entry (vendor and class are cached at enumeration) while its
config space reads all ones.
"""

from __future__ import annotations

import getpass
import os
import platform
from typing import Any, Dict

NVIDIA_VENDOR = "0x10de"
# PCI base class 0x03 (display controller): VGA 0x0300, 3D controller 0x0302. NVSwitches
# (bridge class 0x0680) and the HDMI audio function (0x0403) are not GPUs.
DISPLAY_CLASS_PREFIX = "0x03"
PCI_ROOT = "/sys/bus/pci/devices"

Json = Dict[str, Any]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def uptime_s(path: str = "/proc/uptime") -> float | None:
    text = _read(path)
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


def os_name(path: str = "/etc/os-release") -> str | None:
    text = _read(path) or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"') or None
    return None


def user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else None


def system_facts() -> Json:
    """The TriageFacts fields about the host (uptime_s, kernel, os, user)."""
    uptime = uptime_s()
    return {
        "uptime_s": round(uptime, 1) if uptime is not None else None,
        "kernel": platform.release() or None,
        "os": os_name(),
        "user": user_name(),
    }


def _responds(device_dir: str) -> bool | None:
    """False when the device's config space reads all ones: it no longer answers on the bus.
    (The first 64 bytes of config are readable by any user.)"""
    try:
        with open(os.path.join(device_dir, "config"), "rb") as f:
            head = f.read(2)
    except OSError:
        return None
    if len(head) < 2:
        return None
    return head != b"\xff\xff"


def pci_gpus(root: str = PCI_ROOT) -> tuple[list[Json] | None, str | None]:
    """(NVIDIA display/3D controllers in sysfs, sorted by address; None and why when the bus
    cannot be listed)."""
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        return None, f"cannot list {root}: {exc.strerror or exc}"
    found: list[Json] = []
    for name in names:
        path = os.path.join(root, name)
        vendor = _read(os.path.join(path, "vendor"))
        klass = _read(os.path.join(path, "class"))
        if vendor != NVIDIA_VENDOR or not klass or not klass.startswith(DISPLAY_CLASS_PREFIX):
            continue
        driver = None
        link = os.path.join(path, "driver")
        if os.path.islink(link):
            driver = os.path.basename(os.readlink(link))
        found.append(
            {
                "bus_id": name.lower(),
                "device_id": _read(os.path.join(path, "device")),
                "class_code": klass,
                "driver": driver,
                "responds": _responds(path),
            }
        )
    return found, None
