"""The Prometheus source: one fleet-wide poller that feeds every host's runtime.

Each tick issues one instant query per metric family (never one per host), a bounded number at
a time, plus one `timestamp()` query that dates each host's newest series. The results are
mapped into the messages an agent would send (prom_fleet.py) and handed to each host's
HostFeed as typed messages, as the nvidia-smi path does (smi_adapter.py), so the health rules,
the TUI, `gputui report` and risk take them as they take an agent's.

Hosts are the monitor's, one Source each as for SSH; here a host's Source only registers its
feed with the shared poller and waits, so a fleet of 10,000 hosts costs one polling task.

What cannot be read is said where it applies: a failed query (Prometheus down, a wrong URL, a
401/403, a timeout, an error or non-JSON answer) makes every host unreachable with that one
reason; a host with no series is unreachable with why; a host whose newest series is older than
two scrape intervals is stale, with its age.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import msgspec

from gputui.collect.feed import HostFeed, Source
from gputui.collect.prom_api import PromClient, PromError, VectorSample
from gputui.collect.prom_fleet import (
    FRESHNESS_FIELD,
    FleetReader,
    HostRead,
    HostTracker,
    TickRead,
    host_of,
    selector_query,
)
from gputui.collect.protocol import Refused, convert_message
from gputui.config.model import Config, HostGroup, HostSpec, PromSettings
from gputui.config.ranges import MAX_HOSTS
from gputui.config.schema import DEFAULT_GROUP
from gputui.core import prom_series as ps
from gputui.core.model import AgentMessage, GpuReading, HostState
from gputui.core.text import plain

#: A host whose newest series is older than this many scrape intervals is stale.
STALE_AFTER_SCRAPES = 2


def freshness_names(settings: PromSettings) -> tuple[str, ...]:
    """The series whose sample timestamps date a host, for the source's `series` setting."""
    s = ps.BY_FIELD[FRESHNESS_FIELD]
    names: list[str] = []
    if settings.series in ("gputui", "auto"):
        names.append(s.name)
    if settings.series in ("dcgm", "auto") and s.dcgm is not None:
        names.append(s.dcgm)
    return tuple(names)


async def discover_hosts(settings: PromSettings, client: PromClient | None = None) -> list[str]:
    """The hosts Prometheus has GPU series of (for a hosts file that lists none), sorted.

    Raises PromError when Prometheus cannot be queried or has none."""
    client = client or PromClient(settings)
    names = freshness_names(settings)
    _, series = await client.query(selector_query(names, settings.selector))
    hosts = sorted({h for h in (host_of(item.metric) for item in series) if h is not None})
    if not hosts:
        narrowed = f" matching {settings.selector}" if settings.selector else ""
        raise PromError(
            f"{settings.url} has no series {' or '.join(names)}{narrowed}: no GPU host to watch "
            "(is dcgm-exporter or gputui exporter scraped? series = ... chooses which is read)"
        )
    return hosts


class PromHostSource(Source):
    """One host of a Prometheus-read fleet: registers its feed with the poller and waits."""

    def __init__(self, name: str, poller: PromFleetSource) -> None:
        self.name = name
        self._poller = poller

    async def run(self, feed: HostFeed) -> None:
        self._poller.attach(self.name, feed)
        try:
            await asyncio.Event().wait()  # the poller feeds it; this ends when cancelled
        finally:
            self._poller.detach(self.name)


class PromFleetSource:
    """Polls Prometheus each `query_interval_s` and feeds every attached host."""

    def __init__(
        self,
        settings: PromSettings,
        client: PromClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client or PromClient(settings)
        self.reader = FleetReader(settings.series)
        self._clock = clock
        self._feeds: dict[str, HostFeed] = {}
        self._trackers: dict[str, HostTracker] = {}
        self._task: asyncio.Task[None] | None = None
        self._stale_s = STALE_AFTER_SCRAPES * settings.scrape_interval_s
        # The interval each host is expected to sample at: a new scrape, at most, per query.
        self.interval_s = max(settings.query_interval_s, settings.scrape_interval_s)
        self.ticks = 0
        self.last_error: str | None = None
        self.last_query_s = 0.0  # wall seconds of the last tick's queries, decoding and mapping
        self.last_feed_s = 0.0  # ... and of handing every host its messages (health rules run)

    def source_for(self, name: str) -> PromHostSource:
        return PromHostSource(name, self)

    def register(self, name: str, feed: HostFeed) -> None:
        """Feed `feed` from each tick from now on (tests and benchmarks call tick() themselves)."""
        self._feeds[name] = feed
        self._trackers.setdefault(name, HostTracker(name, self.interval_s))
        feed.set_state(HostState.CONNECTING, f"waiting for {self.settings.url}")

    def attach(self, name: str, feed: HostFeed) -> None:
        """Register `feed`, and start polling with the first host."""
        self.register(name, feed)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gputui-prometheus")

    def detach(self, name: str) -> None:
        self._feeds.pop(name, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await asyncio.sleep(0)  # every host of the monitor attaches before the first tick
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a surprise is every host's reason, never the poller's end
                self._source_failed(
                    f"collector error: {type(exc).__name__}: {plain(str(exc), 200)}"
                )
            next_at += self.settings.query_interval_s
            now = loop.time()
            if next_at < now:  # a tick longer than the period: start the next at once
                next_at = now
            await asyncio.sleep(next_at - now)

    async def query_all(self) -> TickRead:
        """One tick's queries, a bounded number at a time, mapped per host."""
        settings = self.settings
        bound = asyncio.Semaphore(settings.max_concurrent_queries)

        async def one(promql: str) -> tuple[float, list[VectorSample]]:
            async with bound:
                return await self.client.query(promql)

        fams = self.reader.families
        queries = [selector_query(f.names(), settings.selector) for f in fams]
        queries.append(
            selector_query(freshness_names(settings), settings.selector, wrap="timestamp")
        )
        answers = await asyncio.gather(*(one(q) for q in queries))
        now = next((t for t, series in answers if series), self._clock())
        results = {f.key: series for f, (_, series) in zip(fams, answers[:-1], strict=True)}
        return self.reader.read(now, results, answers[-1][1])

    async def tick(self) -> None:
        start = time.perf_counter()
        self.ticks += 1
        try:
            read = await self.query_all()
        except PromError as exc:
            self._source_failed(f"Prometheus: {exc}")
            return
        finally:
            self.last_query_s = time.perf_counter() - start
        self.last_error = None
        fed = time.perf_counter()
        for name, feed in list(self._feeds.items()):
            self._feed_host(name, feed, read.hosts.get(name), read.now)
        self.last_feed_s = time.perf_counter() - fed

    def _source_failed(self, reason: str) -> None:
        self.last_error = reason
        for feed in list(self._feeds.values()):
            feed.set_state(HostState.UNREACHABLE, reason)

    def _feed_host(self, name: str, feed: HostFeed, read: HostRead | None, now: float) -> None:
        tracker = self._trackers[name]
        if read is None:
            feed.set_state(
                HostState.UNREACHABLE,
                f"no series of this host in Prometheus ({' or '.join(self._host_names())}"
                f"{' matching ' + self.settings.selector if self.settings.selector else ''}): "
                "its exporter is down or not scraped",
            )
            return
        if not read.gpus:
            feed.set_state(
                HostState.UNREACHABLE,
                f"its {read.unplaced} series lack the gpu index or UUID label: no GPU can be "
                "placed",
            )
            return
        age = now - read.newest_t if read.newest_t is not None else 0.0
        stale = age > self._stale_s
        # A sample goes to the runtime when Prometheus has a newer one (a stale host's only
        # once, so that its last values show with its state).
        advanced = read.newest_t is None or read.newest_t != tracker.last_t
        if advanced and (not stale or not tracker.hello_sent):
            for message in tracker.messages(read):
                feed.on_message(_converted(message))
        if stale:
            feed.set_state(
                HostState.STALE,
                f"its newest series in Prometheus is {age:.0f} s old, over "
                f"{STALE_AFTER_SCRAPES} scrape intervals of {self.settings.scrape_interval_s:g} s",
            )

    def _host_names(self) -> Sequence[str]:
        return freshness_names(self.settings)


def _converted(message: dict[str, object]) -> AgentMessage | Refused:
    """A message typed as the runtime takes it; a sample with an implausible value keeps its
    other values (the offending fields are left out, as not reported)."""
    made = convert_message(message)
    if isinstance(made, Refused) and message.get("type") == "sample":
        gpus = message["gpus"]
        assert isinstance(gpus, list)
        message = {**message, "gpus": [_plausible(g) for g in gpus]}
        made = convert_message(message)
    return made


def _plausible(reading: dict[str, object]) -> dict[str, object]:
    kept: dict[str, object] = {"index": reading["index"]}
    for key, value in reading.items():
        try:
            msgspec.convert({"index": reading["index"], key: value}, GpuReading)
        except msgspec.ValidationError:
            continue
        kept[key] = value
    return kept


async def with_discovered_hosts(config: Config) -> Config:
    """`config` with its hosts, for a fleet read from Prometheus whose file lists none: one
    per host Prometheus has GPU series of, in group "default". Raises PromError."""
    settings = config.prometheus
    if settings is None or settings.listed_hosts:
        return config
    names = await discover_hosts(settings)
    if len(names) > MAX_HOSTS:
        raise PromError(
            f"{settings.url} has series of {len(names)} hosts, more than the {MAX_HOSTS} gputui "
            "watches; narrow them with selector"
        )
    specs = [
        HostSpec(name=name, group=DEFAULT_GROUP, interval_s=settings.query_interval_s)
        for name in names
    ]
    group = HostGroup(name=DEFAULT_GROUP, hosts=tuple(names))
    return msgspec.structs.replace(config, hosts=specs, groups={DEFAULT_GROUP: group})
