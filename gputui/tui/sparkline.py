"""Text sparklines of the history rings, on a fixed scale per metric.

A fixed scale (0-100% for utilisation, up to the slowdown limit for temperature, the power
limit for power) keeps two GPUs' lines comparable at a glance, which auto-scaling would not.
Each character is the highest value of its bucket: a spike must not be averaged away.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: npt.NDArray[np.floating], width: int, low: float, high: float) -> str:
    """The last values as at most `width` characters; a gap where nothing was reported."""
    if width <= 0 or values.size == 0:
        return ""
    if values.size > width:
        buckets = np.array_split(values.astype(np.float64), width)
        points = [_nanmax(b) for b in buckets]
    else:
        points = [float(v) for v in values]
    span = max(high - low, 1e-9)
    out = []
    for v in points:
        if math.isnan(v):
            out.append(" ")
            continue
        level = round((min(max(v, low), high) - low) / span * (len(BARS) - 1))
        out.append(BARS[level])
    return "".join(out)


def _nanmax(bucket: npt.NDArray[np.float64]) -> float:
    finite = bucket[~np.isnan(bucket)]
    return float(finite.max()) if finite.size else math.nan
