"""The straggler rule's sorted-once medians agree with the plain definition."""

from __future__ import annotations

from statistics import median

from hypothesis import given
from hypothesis import strategies as st

from gputui.core.model import GpuReading
from gputui.core.straggler import _Peers
from gputui.core.thresholds import Thresholds

TH = Thresholds()


def plain_outlier(reading: GpuReading, peers: list[GpuReading]) -> str | None:
    """The rule as written in words: medians of the other GPUs' values."""
    utils = [p.util_pct for p in peers if p.util_pct is not None]
    if len(utils) < TH.straggler_min_peers:
        return None
    peer_util = median(utils)
    if peer_util < TH.straggler_min_util_pct:
        return None
    near = [u for u in utils if abs(u - peer_util) <= TH.straggler_peer_spread_pct]
    if len(near) < 0.75 * len(utils):
        return None  # the peers are not in step
    if reading.util_pct is not None and reading.util_pct < peer_util - TH.straggler_util_drop_pct:
        return f"util {reading.util_pct:.0f}% vs peers' median {peer_util:.0f}%"
    clocks = [p.sm_clock_mhz for p in peers if p.sm_clock_mhz is not None]
    if reading.sm_clock_mhz is not None and len(clocks) >= TH.straggler_min_peers:
        peer_clock = median(clocks)
        if reading.sm_clock_mhz < peer_clock * (1 - TH.straggler_clock_drop_pct / 100):
            return f"SM clock {reading.sm_clock_mhz} MHz vs peers' median {peer_clock:.0f} MHz"
    return None


readings = st.lists(
    st.tuples(
        st.one_of(st.none(), st.floats(0, 100).map(lambda x: round(x))),
        st.one_of(st.none(), st.integers(200, 2000)),
    ),
    min_size=1,
    max_size=10,
)


@given(readings)
def test_sorted_once_medians_match_the_definition(
    values: list[tuple[float | None, int | None]],
) -> None:
    gpus = {i: GpuReading(index=i, util_pct=u, sm_clock_mhz=c) for i, (u, c) in enumerate(values)}
    peers = _Peers(gpus)
    for idx, reading in gpus.items():
        others = [r for i, r in gpus.items() if i != idx]
        assert peers.outlier(reading, TH) == plain_outlier(reading, others)
