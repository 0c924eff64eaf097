"""The end-of-training summary: the seed's per-epoch memory table, right, and the rest."""

from __future__ import annotations

from collections.abc import Sequence

from gputui.train.check import GpuCheck


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} MiB"


def epoch_line(epoch: int, c: GpuCheck) -> str:
    """`Epoch 3: 40,960 MiB of 81,559 MiB (framework 38,912 MiB), 71 C (slowdown 89 C),
    690 W of 700 W, util 98%, ok`."""
    mem = f"{_mib(c.mem_used_mib)} of {_mib(c.mem_total_mib)}"
    if c.framework_mem_mib is not None:
        mem += f" (framework {_mib(c.framework_mem_mib)})"
    parts = [mem]
    if c.temp_c is not None:
        limit = f" (slowdown {c.temp_slowdown_c:.0f} C)" if c.temp_slowdown_c else ""
        parts.append(f"{c.temp_c:.0f} C{limit}")
    if c.power_w is not None:
        limit = f" of {c.power_limit_w:.0f} W" if c.power_limit_w else ""
        parts.append(f"{c.power_w:.0f} W{limit}")
    if c.util_pct is not None:
        parts.append(f"util {c.util_pct:.0f}%")
    if c.clock_event_words:
        parts.append("clocks: " + ", ".join(c.clock_event_words))
    if c.ecc_corrected_new or c.ecc_uncorrected_new:
        parts.append(f"ECC +{c.ecc_corrected_new or 0}/+{c.ecc_uncorrected_new or 0}")
    if c.xids:
        parts.append("XID " + ", ".join(str(x) for x in c.xids))
    worst = c.worst
    verdict = c.level.label + (f": {worst.text}" if worst is not None else "")
    if c.status != "ok":
        return f"Epoch {epoch}: GPU {c.status}, {verdict}"
    return f"Epoch {epoch}: " + ", ".join(parts) + f", {verdict}"


def summary(epochs: Sequence[tuple[int, Sequence[GpuCheck]]]) -> str:
    """Every epoch's checks, GPU by GPU (epochs numbered from 1, as Keras prints them)."""
    by_gpu: dict[tuple[int, str], list[str]] = {}
    for epoch, checks in epochs:
        for c in checks:
            by_gpu.setdefault((c.gpu, c.uuid), []).append(epoch_line(epoch, c))
    if not by_gpu:
        return "GPU health per epoch: no GPU was read"
    lines = []
    for (gpu, uuid), rows in by_gpu.items():
        lines.append(f"GPU health per epoch, GPU {gpu} ({uuid}):")
        lines.extend(f"  {row}" for row in rows)
    return "\n".join(lines)
