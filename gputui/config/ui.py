"""`[ui]` in hosts.toml: how the live monitor opens.

A fleet whose GPUs fit the terminal opens on the per-GPU view (a panel per GPU with meters and
history charts, the processes below), as nvitop opens on one box; a larger one opens on the
fleet table, with the per-GPU view of any host one key (`g`) away (docs/tui.md).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: Up to this many hosts, or up to this many GPUs in all, the monitor opens on the per-GPU
#: view: two 8-GPU hosts by either rule, sixteen 1-GPU workstations by the second.
DEFAULT_PER_GPU_VIEW_MAX_HOSTS = 2
DEFAULT_PER_GPU_VIEW_MAX_GPUS = 16


class UiSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """`[ui]`; 0 for both opens every fleet on the fleet table."""

    per_gpu_view_max_hosts: Annotated[
        int, msgspec.Meta(ge=0, le=1000, description="a whole number of hosts, 0 to 1000")
    ] = DEFAULT_PER_GPU_VIEW_MAX_HOSTS
    per_gpu_view_max_gpus: Annotated[
        int, msgspec.Meta(ge=0, le=10_000, description="a whole number of GPUs, 0 to 10000")
    ] = DEFAULT_PER_GPU_VIEW_MAX_GPUS

    def opens_per_gpu_view(self, hosts: int, gpus: int) -> bool:
        """Whether a fleet of `hosts` hosts with `gpus` GPUs in all opens on the per-GPU view
        (a fleet without a GPU never does: it would show nothing)."""
        if gpus <= 0:
            return False
        return hosts <= self.per_gpu_view_max_hosts or gpus <= self.per_gpu_view_max_gpus
