"""Command palette provider: open any host by name (ctrl+p, then type part of its name)."""

from __future__ import annotations

from functools import partial
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

MAX_DISCOVERY = 20  # hosts listed before anything is typed: the worst first


class HostOpener(Protocol):
    """What the palette needs of the app (GpuTuiApp fits). A protocol, not the app's class:
    the app names this provider in its COMMANDS, and the two modules would import each other."""

    def hosts_worst_first(self) -> list[tuple[str, str]]:
        """Every host's name and state label, the worst first."""
        ...

    def open_host(self, name: str) -> None: ...


class HostCommands(Provider):
    @property
    def _app(self) -> HostOpener:
        return cast(HostOpener, self.app)

    async def discover(self) -> Hits:
        app = self._app
        for name, label in app.hosts_worst_first()[:MAX_DISCOVERY]:
            yield DiscoveryHit(f"Open host {name}", partial(app.open_host, name), help=label)

    async def search(self, query: str) -> Hits:
        app = self._app
        matcher = self.matcher(query)
        for name, label in app.hosts_worst_first():
            command = f"Open host {name}"
            score = matcher.match(command)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(command), partial(app.open_host, name), help=label
                )
