"""The right GPU: the NVML device behind this process's framework device, found by UUID.

NVML numbers GPUs by PCI bus order; CUDA numbers the GPUs a process may see, in its own order
(fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID), after CUDA_VISIBLE_DEVICES has picked and
reordered them by index or by UUID. So `cuda:0` of rank 3 is seldom NVML's GPU 0, and an index
alone names the wrong board. The framework knows its device's UUID (torch:
`get_device_properties(i).uuid`); where it does not, CUDA_VISIBLE_DEVICES is read as CUDA reads
it, and an index is trusted only where CUDA and NVML must agree on the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class DeviceError(ValueError):
    """This process's GPU cannot be named among NVML's: says why and what to pass instead."""


@dataclass(frozen=True)
class NvmlGpu:
    """One GPU as NVML lists it."""

    index: int
    uuid: str
    name: str = ""


def normal_uuid(text: str) -> str:
    """`GPU-1a2b...` as NVML writes it, from NVML's, CUDA's (no prefix) or torch's form."""
    text = text.strip().lower()
    if text.startswith("gpu-"):
        text = text[4:]
    return "GPU-" + text


def visible_devices(env: Mapping[str, str]) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: None when unset (every GPU), else its entries up
    to the first that names no device (CUDA ignores the rest)."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    out = []
    for token in raw.split(","):
        token = token.strip()
        if token.isdigit() or token.upper().startswith(("GPU-", "MIG-")):
            out.append(token)
        else:
            break
    return out


def _by_uuid(prefix: str, gpus: Sequence[NvmlGpu], said: str) -> int:
    wanted = normal_uuid(prefix)
    # CUDA accepts any unique prefix of a UUID in CUDA_VISIBLE_DEVICES.
    found = [g for g in gpus if normal_uuid(g.uuid).startswith(wanted)]
    if len(found) == 1:
        return found[0].index
    uuids = ", ".join(g.uuid for g in gpus) or "none"
    many = "names several GPUs" if found else "names no GPU NVML lists"
    raise DeviceError(f"{said} {many} (NVML lists {uuids})")


def resolve(
    gpus: Sequence[NvmlGpu],
    *,
    device: int | str | None = None,
    framework_uuid: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """NVML's index of this process's GPU.

    `device`: a UUID (or a unique prefix) names the board outright; an int is the framework's
    device ordinal in this process (`cuda:N`); None means the framework's current device,
    else LOCAL_RANK's (torchrun gives each local rank the device of its number), else 0.
    `framework_uuid`: the device's UUID as the framework reports it, which settles it."""
    env = {} if env is None else env
    if isinstance(device, str):
        if device.upper().startswith("MIG-"):
            raise DeviceError(
                f"device {device}: MIG instances are not watched; pass the GPU's UUID"
            )
        return _by_uuid(device, gpus, f"device {device}")
    if framework_uuid:
        return _by_uuid(framework_uuid, gpus, f"the framework's device UUID {framework_uuid}")
    ordinal = device
    if ordinal is None:
        local = env.get("LOCAL_RANK", "0")
        ordinal = int(local) if local.isdigit() else 0
    visible = visible_devices(env)
    if visible is not None:
        if ordinal >= len(visible):
            raise DeviceError(
                f"device {ordinal}: CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '')!r} "
                f"shows this process {len(visible)} GPU(s)"
            )
        token = visible[ordinal]
        if token.upper().startswith("MIG-"):
            raise DeviceError(f"CUDA_VISIBLE_DEVICES names MIG instance {token}: not watched")
        if token.upper().startswith("GPU-"):
            return _by_uuid(token, gpus, f"CUDA_VISIBLE_DEVICES entry {token}")
        ordinal = int(token)
    if ordinal >= len(gpus):
        raise DeviceError(f"device {ordinal}: NVML lists {len(gpus)} GPU(s)")
    names = {g.name for g in gpus}
    if len(names) > 1 and env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        # CUDA's default order puts the fastest board first: with mixed boards an index may
        # name another GPU than NVML's of the same number.
        raise DeviceError(
            f"device {ordinal}: this host mixes GPU models ({', '.join(sorted(names))}), so "
            "CUDA's order may differ from NVML's; pass the GPU's UUID, or set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID"
        )
    return gpus[ordinal].index


def torch_uuid(ordinal: int) -> str | None:
    """The UUID torch reports for `cuda:ordinal`, where torch is loaded and knows one."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        uuid = getattr(torch.cuda.get_device_properties(ordinal), "uuid", None)
    except Exception:  # an old torch, or CUDA refusing: the environment decides
        return None
    return str(uuid) if uuid else None
