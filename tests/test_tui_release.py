"""The app lets go of a replaced snapshot's hosts after the screen update, a chunk at a time."""

from __future__ import annotations

import asyncio

from gputui.core.model import FleetSnapshot, HostSnapshot, HostState
from gputui.tui.release import Release


def fleet(n: int) -> FleetSnapshot:
    return FleetSnapshot(
        t=0.0, hosts=tuple(HostSnapshot(name=f"h{i}", state=HostState.STREAMING) for i in range(n))
    )


async def test_held_hosts_are_let_go_a_chunk_per_turn_of_the_loop() -> None:
    release = Release(chunk=4)
    release.hold(fleet(10))
    assert release.held == 10  # nothing goes before start
    release.start()
    release.start()  # already running: no second chain
    assert release.held == 10
    await asyncio.sleep(0)
    assert release.held == 6
    for _ in range(3):
        await asyncio.sleep(0)
    assert release.held == 0
    calls: list[int] = []
    release.hold(fleet(3))  # a later snapshot starts a new chain
    release.start(lambda: calls.append(release.held))
    assert calls == []
    await asyncio.sleep(0)
    assert release.held == 0 and calls == [0]  # then: once every host is let go
    release.start(lambda: calls.append(-1))  # nothing held: at once
    assert calls == [0, -1]
