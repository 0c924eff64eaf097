"""What the triage facts say beyond the health rules: the PCI bus against NVML, the kernel log's
reachability, and which GPU each kernel-log XID belongs to.

PCI addresses come in three spellings: NVML's `00000000:3B:00.0`, sysfs' `0000:3b:00.0` and
the driver's log `0000:3b:00`. They are compared as `pci_key()` makes them: 4-digit lower-case
domain, bus, device and function (0 when left out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from gputui.core.model import Action, GpuInfo, Hello, KernelXid, Level, PciGpu, TriageFacts

_PCI = re.compile(
    r"^(?:PCI:)?(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})"
    r"(?:\.(?P<fn>[0-7]))?$"
)


def pci_key(bus_id: str | None) -> str | None:
    """`bus_id` in one spelling (`0000:3b:00.0`), or None when it is not a PCI address."""
    if not bus_id:
        return None
    m = _PCI.match(bus_id.strip())
    if m is None:
        return None
    domain = int(m.group("domain") or "0", 16)
    return f"{domain:04x}:{m.group('bus').lower()}:{m.group('dev').lower()}.{m.group('fn') or 0}"


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing triage found: a health reason, or a fact about the host."""

    code: str
    level: Level
    text: str
    gpu: int | None = None
    action: Action = Action.NONE  # NVIDIA's recommended action
    action_text: str = ""  # NVIDIA's recommendation in words, when it says more than `action`
    fix: str | None = None  # how to fix what stopped triage from seeing everything


class GpuMap:
    """Which GPU index sits at which PCI address."""

    def __init__(self, hello: Hello | None, facts: TriageFacts | None) -> None:
        gpus: list[GpuInfo] = hello.gpus if hello is not None else []
        self.by_key: dict[str, int] = {}
        for g in gpus:
            key = pci_key(g.pci_bus_id)
            if key is not None:
                self.by_key[key] = g.index
        self.inferred: set[int] = set()
        # A GPU lost before the agent started has no address in the hello. NVML numbers GPUs
        # in PCI bus order, so when the bus lists exactly NVML's GPUs and every known address
        # sits at its index in that order, the missing ones are placed by position too.
        on_bus = sorted(_nvidia_keys(facts))
        if gpus and len(on_bus) == len(gpus):
            consistent = all(on_bus[i] == k for k, i in self.by_key.items() if i < len(on_bus))
            if consistent:
                for i, key in enumerate(on_bus):
                    if key not in self.by_key:
                        self.by_key[key] = i
                        self.inferred.add(i)

    def index(self, bus_id: str | None) -> int | None:
        key = pci_key(bus_id)
        return None if key is None else self.by_key.get(key)


def _nvidia_keys(facts: TriageFacts | None) -> list[str]:
    """Addresses of the GPUs on the bus that the nvidia driver owns (or that have no driver)."""
    if facts is None or facts.pci_gpus is None:
        return []
    keys = []
    for dev in facts.pci_gpus:
        if dev.driver not in (None, "nvidia"):
            continue  # handed to a VM (vfio-pci) or another driver on purpose
        key = pci_key(dev.bus_id)
        if key is not None:
            keys.append(key)
    return keys


def _fix_kernel_log(user: str | None) -> str:
    who = user or "the triage user"
    return (
        "let the account read the kernel log: `sudo sysctl kernel.dmesg_restrict=0` (persist it "
        f"in /etc/sysctl.d/), or `sudo usermod -aG systemd-journal {who}` (or adm) for "
        "journalctl, or run triage as a user that can read the kernel log"
    )


def kernel_log_findings(facts: TriageFacts) -> list[Finding]:
    log = facts.kernel_log
    if log.readable:
        if log.xids_dropped:
            text = f"kernel log: {log.xids_dropped} older XID lines left out (only the newest kept)"
            return [Finding(code="kernel_log_truncated", level=Level.OK, text=text)]
        return []
    who = f" as {facts.user}" if facts.user else ""
    detail = f": {log.error}" if log.error else ""
    if log.error_code == "permission_denied":
        restrict = " (kernel.dmesg_restrict = 1)" if log.dmesg_restrict else ""
        text = f"kernel log not readable{who}{restrict}, so past XIDs are unknown{detail}"
        return [
            Finding(
                code="kernel_log_denied",
                level=Level.WARN,
                text=text,
                fix=_fix_kernel_log(facts.user),
            )
        ]
    text = f"kernel log could not be read{who}, so past XIDs are unknown{detail}"
    fix = "install journalctl or dmesg (util-linux) on the host, or run triage where they work"
    return [Finding(code="kernel_log_unavailable", level=Level.WARN, text=text, fix=fix)]


def pci_findings(
    hello: Hello | None, facts: TriageFacts, gpu_map: GpuMap, expected: int | None
) -> list[Finding]:
    """The PCI bus against NVML: GPUs NVML misses, GPUs gone or not answering, too few GPUs."""
    out: list[Finding] = []
    nvml_count = facts.nvml_gpu_count
    if nvml_count is None and hello is not None:
        nvml_count = len(hello.gpus)
    if facts.pci_gpus is None:
        if facts.pci_error:
            text = f"PCI bus not readable: {facts.pci_error}"
            out.append(Finding(code="pci_unreadable", level=Level.OK, text=text))
        on_bus = nvml_count
    else:
        on_bus = len(facts.pci_gpus)
        out.extend(_bus_vs_nvml(hello, facts.pci_gpus, gpu_map, nvml_count))
    if expected is not None and on_bus is not None and on_bus < expected:
        text = f"{on_bus} GPUs found, {expected} expected: {expected - on_bus} missing from the bus"
        out.append(
            Finding(
                code="gpu_count_low",
                level=Level.CRITICAL,
                text=text,
                action=Action.REBOOT_NODE,
                action_text="power-cycle the node; reseat or RMA the GPU if it stays missing",
            )
        )
    return out


def _bus_vs_nvml(
    hello: Hello | None, devices: Sequence[PciGpu], gpu_map: GpuMap, nvml_count: int | None
) -> list[Finding]:
    out: list[Finding] = []
    for dev in devices:
        if dev.responds is False:
            idx = gpu_map.index(dev.bus_id)
            name = f"GPU{idx} ({dev.bus_id})" if idx is not None else dev.bus_id
            out.append(
                Finding(
                    code="pci_no_answer",
                    level=Level.FAILED,
                    gpu=idx,
                    text=f"{name} no longer answers on the PCI bus (config space reads 0xffff)",
                    action=Action.REBOOT_NODE,
                    action_text="reboot or power-cycle the node; RMA if it recurs",
                )
            )
    owned = _nvidia_keys_of(devices)
    listed = {k for k in (pci_key(g.pci_bus_id) for g in (hello.gpus if hello else [])) if k}
    if not owned and (listed or nvml_count):
        # NVML works but sysfs shows no NVIDIA device: a container or sandbox without the
        # host's PCI view, not eight GPUs gone from the bus.
        text = f"sysfs shows no NVIDIA GPU while NVML lists {nvml_count}: PCI checks skipped"
        return [*out, Finding(code="pci_view_empty", level=Level.OK, text=text)]
    all_addressed = hello is not None and len(listed) == len(hello.gpus)
    if all_addressed:
        missing = sorted(set(owned) - listed)
        for key in missing:
            dev = owned[key]
            what = f" (device {dev.device_id})" if dev.device_id else ""
            out.append(
                _not_in_nvml(f"{dev.bus_id}{what} is on the PCI bus but NVML lists no GPU there")
            )
        for key in sorted(listed - set(owned)):
            idx = gpu_map.index(key)
            out.append(
                Finding(
                    code="gpu_gone_from_bus",
                    level=Level.FAILED,
                    gpu=idx,
                    text=f"GPU{idx} ({key}) is in NVML's inventory but gone from the PCI bus",
                    action=Action.REBOOT_NODE,
                    action_text="reboot or power-cycle the node; RMA if it recurs",
                )
            )
    elif nvml_count is not None and len(owned) > nvml_count:
        n = len(owned) - nvml_count
        out.append(
            _not_in_nvml(
                f"{len(owned)} GPUs on the PCI bus, NVML lists {nvml_count}: {n} not initialised"
            )
        )
    return out


def _nvidia_keys_of(devices: Sequence[PciGpu]) -> dict[str, PciGpu]:
    out: dict[str, PciGpu] = {}
    for dev in devices:
        key = pci_key(dev.bus_id)
        if key is not None and dev.driver in (None, "nvidia"):
            out[key] = dev
    return out


def _not_in_nvml(text: str) -> Finding:
    return Finding(
        code="gpu_not_in_nvml",
        level=Level.CRITICAL,
        text=f"{text}: the driver did not initialise it (look for RmInitAdapter in the kernel log)",
        action=Action.REBOOT_NODE,
        action_text="reboot the node; reseat or RMA the GPU if it stays missing",
    )


def unplaced_xid_findings(
    xids: Sequence[KernelXid], gpu_map: GpuMap, facts: TriageFacts
) -> list[Finding]:
    """XIDs logged for an address where no GPU is now: that GPU is gone from the bus."""
    on_bus = set(_nvidia_keys(facts))
    if not on_bus:
        return []  # no PCI view (see pci_view_empty): absence from it proves nothing
    seen: set[str] = set()
    out: list[Finding] = []
    for x in xids:
        key = pci_key(x.pci_bus_id)
        if key is None or key in seen or gpu_map.index(key) is not None:
            continue
        seen.add(key)
        if facts.pci_gpus is not None and key not in on_bus:
            out.append(
                Finding(
                    code="gpu_gone_from_bus",
                    level=Level.FAILED,
                    text=f"the kernel log names a GPU at {key} (XID {x.xid}) that is no longer "
                    "on the PCI bus",
                    action=Action.REBOOT_NODE,
                    action_text="reboot or power-cycle the node; RMA if it recurs",
                )
            )
    return out
