"""The Prometheus source without a Prometheus: its configuration, its HTTP client against a
stub server that answers as a broken or locked Prometheus would, the mapping of series into an
agent's messages, and the poller's host states (stale, unreachable, back)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gputui.collect.host_runtime import HostRuntime
from gputui.collect.prom_api import PromClient, PromError, VectorSample
from gputui.collect.prom_fleet import FleetReader, HostTracker, families, selector_query
from gputui.collect.prom_source import PromFleetSource
from gputui.config import ConfigError, config_from_text
from gputui.config.model import PromSettings
from gputui.core.model import HostState, Level

# --------------------------------------------------------------------------------------------
# [source] in hosts.toml
# --------------------------------------------------------------------------------------------

BASE = '[source]\nkind = "prometheus"\nurl = "http://prom:9090"\n'


def test_a_prometheus_source_needs_no_host_list_and_defaults_safely() -> None:
    config = config_from_text(BASE)
    prom = config.prometheus
    assert prom is not None and config.hosts == []
    assert not prom.listed_hosts and not prom.insecure_skip_verify and prom.series == "auto"
    assert prom.query_interval_s == prom.scrape_interval_s == 30.0
    listed = config_from_text('hosts = ["gpu[1-2]"]\n' + BASE + "query_interval_s = 5\n")
    assert listed.prometheus is not None and listed.prometheus.listed_hosts
    assert [h.name for h in listed.hosts] == ["gpu1", "gpu2"]
    assert listed.prometheus.query_interval_s == 5


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[source]\nkind = "prometheus"\n', "source.url", 'needs url = "http://HOST:9090"'),
        (BASE.replace("http://prom:9090", "prom:9090"), "source.url", "http:// or https://"),
        (BASE.replace("9090", "9090/api/v1"), "source.url", "without /api/v1"),
        (BASE + 'basic_auth_user = "u"\n', "source.basic_auth_password_file", "needs both"),
        (BASE + 'bearer_token_file = "/no/such/token"\n', "source.bearer_token_file", "not found"),
        (BASE + "selector = '{a=\"b\"}'\n", "source.selector", "without braces"),
        (BASE + 'series = "nvml"\n', "source.series", '"dcgm", "gputui", "auto"'),
        ('hosts = ["a"]\n[source]\nurl = "http://p:9090"\n', "source.url", 'kind = "prometheus"'),
        (BASE + "timeout_s = 0\n", "source.timeout_s", "> 0"),
    ],
)
def test_source_mistakes_name_the_key(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text(text)
    assert info.value.key == key and words in str(info.value)


def test_basic_auth_and_a_bearer_token_exclude_each_other(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x")
    text = (
        BASE + f'basic_auth_user = "u"\nbasic_auth_password_file = "{secret}"\n'
        f'bearer_token_file = "{secret}"\n'
    )
    with pytest.raises(ConfigError, match="basic auth or a bearer token, not both"):
        config_from_text(text)


# --------------------------------------------------------------------------------------------
# The HTTP client against a stub server
# --------------------------------------------------------------------------------------------


class Stub:
    """What the stub server answers next: a status, a body, a delay; and what it was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b""
        self.delay_s = 0.0
        self.seen_auth: str | None = None
        self.seen_query: str | None = None


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = self.rfile.read(length).decode()
            state.seen_auth = self.headers.get("Authorization")
            state.seen_query = form
            time.sleep(state.delay_s)
            with contextlib.suppress(OSError):  # the client gave up (the timeout test)
                self.send_response(state.status)
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def vector(*series: dict[str, Any]) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": list(series)}}
    ).encode()


def client(url: str, **kw: Any) -> PromClient:
    return PromClient(PromSettings(url=url, timeout_s=kw.pop("timeout_s", 2.0), **kw))


def test_a_vector_decodes_into_typed_series(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.body = vector({"metric": {"Hostname": "h", "gpu": "0"}, "value": [1700000000.5, "42"]})
    now, series = client(url).query_blocking('DCGM_FI_DEV_GPU_TEMP{a="b"}')
    assert now == 1700000000.5
    assert series == [VectorSample(metric={"Hostname": "h", "gpu": "0"}, value=(now, "42"))]
    assert state.seen_query == "query=DCGM_FI_DEV_GPU_TEMP%7Ba%3D%22b%22%7D"
    assert state.seen_auth is None


def test_secrets_are_read_from_their_files_at_each_query(
    stub: tuple[Stub, str], tmp_path: Path
) -> None:
    state, url = stub
    state.body = vector()
    token = tmp_path / "token"
    token.write_text("t1\n")
    bearer = client(url, bearer_token_file=token)
    bearer.query_blocking("up")
    assert state.seen_auth == "Bearer t1"
    token.write_text("t2\n")  # rotated
    bearer.query_blocking("up")
    assert state.seen_auth == "Bearer t2"
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    client(url, basic_auth_user="ops", basic_auth_password_file=password).query_blocking("up")
    assert state.seen_auth == "Basic " + base64.b64encode(b"ops:s3cret").decode()


@pytest.mark.parametrize(
    ("status", "body", "kw", "words"),
    [
        (401, b"", {}, "HTTP 401 unauthorized; check no credentials were sent"),
        (403, b"", {"bearer": True}, "HTTP 403 forbidden; check bearer_token_file"),
        (404, b"404 page not found", {}, "has no /api/v1/query (HTTP 404): check url"),
        (200, b"<html>login</html>", {}, 'not its JSON: "<html>login</html>"); check url'),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error"}',
            {},
            "answered HTTP 400: bad_data: parse error",
        ),
        (
            503,
            b'{"status":"error","errorType":"timeout","error":"query timed out"}',
            {},
            "answered HTTP 503: timeout: query timed out",
        ),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
            {},
            "answered a matrix, not an instant vector",
        ),
    ],
)
def test_each_bad_answer_is_one_clear_reason(
    stub: tuple[Stub, str], tmp_path: Path, status: int, body: bytes, kw: dict[str, Any], words: str
) -> None:
    state, url = stub
    state.status, state.body = status, body
    extra: dict[str, Any] = {}
    if kw.get("bearer"):
        token = tmp_path / "token"
        token.write_text("t")
        extra["bearer_token_file"] = token
    with pytest.raises(PromError) as info:
        client(url, **extra).query_blocking("up")
    assert words in str(info.value) and url in str(info.value)


def test_a_slow_prometheus_is_a_timeout_with_the_setting_named(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.delay_s, state.body = 1.0, vector()
    with pytest.raises(PromError, match=r"did not answer within timeout_s = 0.2 s"):
        client(url, timeout_s=0.2).query_blocking("up")


# --------------------------------------------------------------------------------------------
# Series -> an agent's messages
# --------------------------------------------------------------------------------------------

DCGM_LABELS = {"UUID": "GPU-a", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "h1"}


def dcgm(name: str, gpu: int, value: str, **labels: str) -> VectorSample:
    metric = {"__name__": name, "gpu": str(gpu), **DCGM_LABELS, "UUID": f"GPU-{gpu}", **labels}
    return VectorSample(metric=metric, value=(100.0, value))


def test_queries_are_one_per_family_with_the_selector_inside() -> None:
    fams = families("auto")
    temp = next(f for f in fams if f.key == "temp_c")
    assert selector_query(temp.names(), 'cluster="a"') == (
        '{__name__=~"gputui_gpu_temperature_celsius|DCGM_FI_DEV_GPU_TEMP", cluster="a"}'
    )
    assert selector_query(("DCGM_FI_DEV_GPU_TEMP",), None, wrap="timestamp") == (
        "timestamp(DCGM_FI_DEV_GPU_TEMP)"
    )
    dcgm_only = {f.key for f in families("dcgm")}
    assert "recovery_action" not in dcgm_only and "nvlink_active" not in dcgm_only
    assert "temp_c" in dcgm_only and "xid" in dcgm_only


def ours(name: str, value: str, **labels: str) -> VectorSample:
    """A series of gputui's exporter, of GPU 1 of host h2."""
    metric = {"__name__": name, "host": "h2", "gpu": "1", "uuid": "GPU-b", "model": "A100"}
    return VectorSample(metric={**metric, **labels}, value=(100.0, value))


def test_dcgm_and_gputui_series_map_into_readings_in_gputui_units() -> None:
    reader = FleetReader("auto")
    results = {
        "temp_c": [dcgm("DCGM_FI_DEV_GPU_TEMP", 0, "61")],
        "mem_used_mib": [
            dcgm("DCGM_FI_DEV_FB_USED", 0, "1000"),
            ours("gputui_gpu_memory_used_bytes", str(2048 * 1024 * 1024)),
        ],
        "util_pct": [ours("gputui_gpu_utilization_ratio", "0.5")],
        "remap_pending": [dcgm("DCGM_FI_DEV_ROW_REMAP_PENDING", 0, "1")],
        "sm_clock_mhz": [dcgm("DCGM_FI_DEV_SM_CLOCK", 0, "1980.0")],
    }
    read = reader.read(100.0, results, [])
    h1, h2 = read.hosts["h1"], read.hosts["h2"]
    assert h1.readings[0] == {
        "index": 0, "temp_c": 61.0, "mem_used_mib": 1000.0, "remap_pending": True,
        "sm_clock_mhz": 1980,
    }  # fmt: skip
    assert h2.readings[1] == {"index": 1, "mem_used_mib": 2048.0, "util_pct": 50.0}
    assert h2.gpus[1].uuid == "GPU-b" and h2.gpus[1].name == "A100"


def test_nan_values_and_unplaceable_series_are_said_not_judged() -> None:
    reader = FleetReader("dcgm")
    no_gpu = VectorSample(metric={"Hostname": "h1", "UUID": "GPU-9"}, value=(100.0, "70"))
    read = reader.read(100.0, {"temp_c": [dcgm("DCGM_FI_DEV_GPU_TEMP", 0, "NaN"), no_gpu]}, [])
    host = read.hosts["h1"]
    assert host.readings == {} and host.unplaced == 1
    messages = HostTracker("h1", 1.0).messages(host)
    hello = messages[0]
    assert hello["type"] == "hello"
    assert "values that are not numbers: temp_c of GPU0 is NaN" in hello["unavailable"]
    assert "1 series without a gpu index or UUID label (not placed)" in hello["unavailable"]
    assert messages[1]["gpus"] == []


def test_dcgm_last_xid_becomes_an_event_when_it_changes() -> None:
    reader = FleetReader("dcgm")
    tracker = HostTracker("h1", 1.0)

    def xids(*values: str) -> list[dict[str, Any]]:
        results = {"xid": [dcgm("DCGM_FI_DEV_XID_ERRORS", i, v) for i, v in enumerate(values)]}
        read = reader.read(100.0, results, [])
        return [m for m in tracker.messages(read.hosts["h1"]) if m["type"] == "event"]

    first = xids("0", "79")  # nonzero at the first read: it happened, when is unknown
    assert [(e["gpu"], e["xid"]) for e in first] == [(1, 79)]
    assert xids("0", "79") == []  # the same last XID: nothing new
    assert [(e["gpu"], e["xid"]) for e in xids("13", "79")] == [(0, 13)]
    assert xids("0", "79") == []  # back to 0 (a reset): no XID


def test_gputui_xid_counters_become_an_event_per_rise() -> None:
    reader = FleetReader("gputui")
    tracker = HostTracker("h2", 1.0)

    def count(n: str) -> list[dict[str, Any]]:
        item = ours("gputui_gpu_xid_errors_total", n, xid="48")
        read = reader.read(100.0, {"xid": [item]}, [])
        return [m for m in tracker.messages(read.hosts["h2"]) if m["type"] == "event"]

    assert count("0") == []
    assert [(e["gpu"], e["xid"]) for e in count("1")] == [(1, 48)]
    assert count("1") == []


# --------------------------------------------------------------------------------------------
# The poller's host states, with a scripted client
# --------------------------------------------------------------------------------------------


class ScriptedClient:
    """Answers every query from `series` (by the family's dcgm name), or raises `error`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sample_t = 1000.0
        self.temp = "60"
        self.error: PromError | None = None
        self.queries: list[str] = []

    async def query(self, promql: str) -> tuple[float, list[VectorSample]]:
        self.queries.append(promql)
        if self.error is not None:
            raise self.error
        if promql.startswith("timestamp("):
            return self.now, [dcgm("", 0, str(self.sample_t))]
        if promql.startswith("DCGM_FI_DEV_GPU_TEMP"):
            return self.now, [dcgm("DCGM_FI_DEV_GPU_TEMP", 0, self.temp)]
        if promql.startswith("DCGM_FI_DEV_POWER_USAGE"):
            return self.now, [dcgm("DCGM_FI_DEV_POWER_USAGE", 0, "300")]
        if promql.startswith("DCGM_FI_DEV_GPU_UTIL"):
            return self.now, [dcgm("DCGM_FI_DEV_GPU_UTIL", 0, "90")]
        if promql.startswith("DCGM_FI_DEV_FB_USED"):
            return self.now, [dcgm("DCGM_FI_DEV_FB_USED", 0, "1000")]
        return self.now, []


def poller_and_host(name: str = "h1") -> tuple[PromFleetSource, ScriptedClient, HostRuntime]:
    settings = PromSettings(
        url="http://prom:9090", series="dcgm", scrape_interval_s=15, query_interval_s=15
    )
    fake = ScriptedClient()
    poller = PromFleetSource(settings, client=fake)  # type: ignore[arg-type]
    runtime = HostRuntime(name, interval_s=15, history_len=0, emit=lambda e, u: None)
    poller.register(name, runtime)  # the test ticks it; attach() would start a polling task
    return poller, fake, runtime


def test_one_query_per_family_per_tick_whatever_the_fleet() -> None:
    poller, fake, runtime = poller_and_host()
    asyncio.run(poller.tick())
    assert len(fake.queries) == len(poller.reader.families) + 1  # + the timestamps
    assert runtime.state is HostState.DEGRADED  # streaming, with dcgm's gaps said
    assert runtime.state_reason.startswith("not available from this source: clock-event")
    assert runtime.verdict.host.level is Level.OK


def test_series_older_than_two_scrapes_make_the_host_stale_then_fresh_again() -> None:
    poller, fake, runtime = poller_and_host()
    asyncio.run(poller.tick())
    fake.now += 31  # no new scrape for 31 s: over 2 x 15 s
    asyncio.run(poller.tick())
    assert runtime.state is HostState.STALE
    assert runtime.state_reason == (
        "its newest series in Prometheus is 31 s old, over 2 scrape intervals of 15 s"
    )
    fake.sample_t = fake.now
    asyncio.run(poller.tick())
    assert runtime.state is HostState.DEGRADED


def test_a_failed_query_makes_every_host_unreachable_with_one_reason_until_it_answers() -> None:
    poller, fake, runtime = poller_and_host()
    asyncio.run(poller.tick())
    fake.error = PromError("cannot reach http://prom:9090: connection refused")
    asyncio.run(poller.tick())
    assert runtime.state is HostState.UNREACHABLE
    assert runtime.state_reason == "Prometheus: cannot reach http://prom:9090: connection refused"
    fake.error = None
    fake.sample_t = fake.now = fake.now + 15
    asyncio.run(poller.tick())
    assert runtime.state is HostState.DEGRADED


def test_an_implausible_value_is_left_out_and_the_rest_is_judged() -> None:
    poller, fake, runtime = poller_and_host()
    fake.temp = "1e9"  # no GPU runs at a billion degrees
    asyncio.run(poller.tick())
    assert runtime.sample is not None
    reading = runtime.sample.gpus[0]
    assert reading.temp_c is None and reading.power_w == 300
    assert runtime.state is HostState.DEGRADED and "temperature (GPU0)" in runtime.state_reason


def test_the_polling_task_survives_a_surprise_and_says_it_on_every_host() -> None:
    poller, fake, runtime = poller_and_host()

    async def broken(promql: str) -> tuple[float, list[VectorSample]]:
        raise ValueError("unexpected")

    fake.query = broken  # type: ignore[method-assign]

    async def poll_briefly() -> None:
        poller._feeds.clear()
        poller.attach("h1", runtime)  # starts the polling task
        await asyncio.sleep(0.1)
        assert poller._task is not None and not poller._task.done()
        await poller.close()

    asyncio.run(poll_briefly())
    assert runtime.state is HostState.UNREACHABLE
    assert runtime.state_reason == "collector error: ValueError: unexpected"
