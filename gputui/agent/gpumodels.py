"""The GPU models the simulator knows, with the limits real boards report through NVML.

Limits are what `nvidia-smi -q` prints for each board (temperature thresholds, TDP, max
clocks, PCIe link, NVLink count); the thermal constants are fitted so a board at TDP settles
where air-cooled HGX systems run in practice (H100 about 70 C at 700 W).
"""

from __future__ import annotations

from typing import NamedTuple


class GpuModel(NamedTuple):
    key: str  # the scenario's `model`
    name: str  # nvmlDeviceGetName
    arch: int  # NVML_DEVICE_ARCH_*
    pci_device_id: int  # 0x10de vendor, this device
    memory_mib: int
    tdp_w: float
    idle_w: float
    temp_shutdown_c: int
    temp_slowdown_c: int
    temp_gpu_max_c: int
    temp_mem_max_c: int
    sm_max_mhz: int
    sm_idle_mhz: int
    mem_max_mhz: int
    clock_step_mhz: int  # SM clocks move in steps of this size
    pcie_gen_max: int
    pcie_width_max: int
    nvlinks: int
    row_remapping: bool  # Ampere and later remap rows; older boards retire pages
    c_per_w: float  # steady-state temperature rise over inlet per watt
    tau_s: float  # thermal time constant of die + heatsink
    # NVLink error counters this generation does not report (NVML_ERROR_NOT_SUPPORTED).
    nvlink_unsupported_counters: tuple[int, ...] = ()


NVML_DEVICE_ARCH_VOLTA = 5
NVML_DEVICE_ARCH_AMPERE = 7
NVML_DEVICE_ARCH_HOPPER = 9

MODELS: dict[str, GpuModel] = {
    "H100-SXM": GpuModel(
        key="H100-SXM",
        name="NVIDIA H100 80GB HBM3",
        arch=NVML_DEVICE_ARCH_HOPPER,
        pci_device_id=0x2330,
        memory_mib=81559,
        tdp_w=700.0,
        idle_w=72.0,
        temp_shutdown_c=92,
        temp_slowdown_c=89,
        temp_gpu_max_c=87,
        temp_mem_max_c=95,
        sm_max_mhz=1980,
        sm_idle_mhz=345,
        mem_max_mhz=2619,
        clock_step_mhz=15,
        pcie_gen_max=5,
        pcie_width_max=16,
        nvlinks=18,
        row_remapping=True,
        c_per_w=0.060,
        tau_s=35.0,
        # NVLink4 folds data CRC errors into the flit counter.
        nvlink_unsupported_counters=(3,),
    ),
    "A100-SXM": GpuModel(
        key="A100-SXM",
        name="NVIDIA A100-SXM4-80GB",
        arch=NVML_DEVICE_ARCH_AMPERE,
        pci_device_id=0x20B2,
        memory_mib=81920,
        tdp_w=400.0,
        idle_w=58.0,
        temp_shutdown_c=92,
        temp_slowdown_c=89,
        temp_gpu_max_c=85,
        temp_mem_max_c=95,
        sm_max_mhz=1410,
        sm_idle_mhz=210,
        mem_max_mhz=1593,
        clock_step_mhz=15,
        pcie_gen_max=4,
        pcie_width_max=16,
        nvlinks=12,
        row_remapping=True,
        c_per_w=0.090,
        tau_s=30.0,
    ),
    "V100-SXM2": GpuModel(
        key="V100-SXM2",
        name="Tesla V100-SXM2-32GB",
        arch=NVML_DEVICE_ARCH_VOLTA,
        pci_device_id=0x1DB5,
        memory_mib=32768,
        tdp_w=300.0,
        idle_w=42.0,
        temp_shutdown_c=90,
        temp_slowdown_c=87,
        temp_gpu_max_c=83,
        temp_mem_max_c=85,
        sm_max_mhz=1530,
        sm_idle_mhz=135,
        mem_max_mhz=877,
        clock_step_mhz=7,
        pcie_gen_max=3,
        pcie_width_max=16,
        nvlinks=6,
        row_remapping=False,
        c_per_w=0.110,
        tau_s=25.0,
    ),
}

# PCI bus numbers of the eight GPUs of a DGX/HGX board, in NVML index order.
HGX_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


def bus_number(index: int) -> int:
    """The PCI bus of GPU `index`; past eight GPUs the pattern continues on a second board."""
    base = HGX_BUSES[index % len(HGX_BUSES)]
    return (base + 2 * (index // len(HGX_BUSES))) & 0xFF
