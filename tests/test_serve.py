"""`gputui serve`: what it refuses to bind, what it runs per browser session, and the gate every
request passes (token, Host, Origin), on textual-serve's real routes and on the real command."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner, Result

from gputui.cli import commands  # noqa: F401  (registers every command)
from gputui.cli.app import app
from gputui.cli.serve_auth import Gate, GatedServer, is_loopback, new_token

REPO = Path(__file__).resolve().parent.parent


class Served:
    """What `gputui serve` would have served, recorded instead of serving it."""

    def __init__(self) -> None:
        self.servers: list[GatedServer] = []


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Served:
    record = Served()
    monkeypatch.setattr(GatedServer, "serve", lambda self, debug=False: record.servers.append(self))
    # No hosts file of the machine's own: each test names one or has none.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("GPUTUI_HOSTS", raising=False)
    return record


def gputui(*args: str) -> Result:
    return CliRunner().invoke(app, ["serve", *args])


def one_error_line(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gputui: ")
    return lines[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gpu-login.example.org"])
def test_a_bind_other_machines_reach_needs_public(served: Served, host: str) -> None:
    result = gputui("--demo", "2", "--host", host)
    assert result.exit_code == 3
    line = one_error_line(result)
    assert f"--host {host}" in line and "--public" in line
    assert served.servers == []
    assert result.stdout == ""


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_bind_is_served_without_a_token(served: Served, host: str) -> None:
    result = gputui("--demo", "2", "--host", host, "--port", "8123")
    assert result.exit_code == 0, result.output
    (server,) = served.servers
    assert (server.host, server.port, server.gate.token) == (host, 8123, None)
    shown = f"[{host}]" if ":" in host else host
    assert f"serving the monitor at http://{shown}:8123/ " in result.stdout


def test_the_default_bind_is_loopback_on_port_8000(served: Served) -> None:
    assert gputui("--demo", "2").exit_code == 0
    (server,) = served.servers
    assert (server.host, server.port, server.gate.token) == ("127.0.0.1", 8000, None)


def test_public_binds_every_interface_with_a_fresh_token_printed(served: Served) -> None:
    first, second = gputui("--demo", "2", "--public"), gputui("--demo", "2", "--public")
    assert first.exit_code == second.exit_code == 0, first.output
    tokens = []
    for server, result in zip(served.servers, (first, second), strict=True):
        assert server.host == "0.0.0.0"
        token = server.gate.token
        assert token is not None and len(token) >= 32
        address = f"http://{socket.getfqdn()}:8000/?token={token}"
        assert address in result.stdout
        tokens.append(token)
    assert tokens[0] != tokens[1]


def test_public_on_a_named_address_keeps_it(served: Served) -> None:
    assert gputui("--demo", "2", "--public", "--host", "127.0.0.1", "--port", "9001").exit_code == 0
    (server,) = served.servers
    assert server.host == "127.0.0.1" and server.gate.token is not None
    assert server.gate.cookie == "gputui_token_9001"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "h.toml", "--demo", "2"], "--hosts and --demo exclude each other"),
        (["--demo", "0"], "--demo takes a number of hosts from 1 to 5000"),
        (["--demo", "2", "--port", "0"], "--port takes a port number from 1 to 65535"),
        (["--demo", "2", "--port", "65536"], "--port takes a port number from 1 to 65535"),
    ],
)
def test_bad_arguments_are_said_in_one_line(served: Served, args: list[str], message: str) -> None:
    result = gputui(*args)
    assert result.exit_code == 2
    assert one_error_line(result) == f"gputui: {message}"
    assert served.servers == []


def test_each_session_runs_the_demo_of_the_size_asked(served: Served) -> None:
    assert gputui("--demo", "3").exit_code == 0
    argv = shlex.split(served.servers[0].command)
    assert argv == [sys.executable, "-m", "gputui.cli", "demo", "--hosts", "3"]


def test_each_session_runs_the_monitor_on_the_hosts_file_checked_at_start(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hosts.toml").write_text('hosts = ["gpu-a", "gpu-b"]\n')
    monkeypatch.chdir(tmp_path)  # a relative path, as typed; the session gets it absolute
    assert gputui("--hosts", "site/hosts.toml").exit_code == 0
    argv = shlex.split(served.servers[0].command)
    assert argv == [
        *(sys.executable, "-m", "gputui.cli", "monitor", "--hosts"),
        str(tmp_path / "site" / "hosts.toml"),
    ]


def test_a_bad_hosts_file_is_said_at_start_not_per_session(served: Served, tmp_path: Path) -> None:
    bad = tmp_path / "hosts.toml"
    bad.write_text('hosts = ["gpu-a"]\n[defaults]\nintervall = 1\n')
    result = gputui("--hosts", str(bad))
    assert result.exit_code == 2
    assert 'unknown key "intervall"' in one_error_line(result)
    missing = gputui("--hosts", str(tmp_path / "missing.toml"))
    assert missing.exit_code == 2 and "missing.toml" in one_error_line(missing)
    assert served.servers == []


def test_with_no_hosts_file_anywhere_the_session_runs_bare_monitor(served: Served) -> None:
    """What bare `gputui` does without a hosts file, the served session does too."""
    assert gputui().exit_code == 0
    argv = shlex.split(served.servers[0].command)
    assert argv == [sys.executable, "-m", "gputui.cli", "monitor"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_only_loopback_addresses_and_localhost_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# The gate on textual-serve's own application: every route it answers, as `serve()` builds it.
# (`_make_app` is textual-serve's, named here to list its real routes: gputui calls only its
# public hooks.)

QUIET_APP = shlex.join([sys.executable, "-c", "pass"])  # a session's app that ends at once


@pytest.fixture
async def public_client() -> AsyncIterator[tuple[TestClient[Any, Any], str]]:
    token = new_token()
    async with gated_client(Gate(token, 0)) as client:
        yield client, token


@contextlib.asynccontextmanager
async def gated_client(gate: Gate) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the application textual-serve's `serve()` builds, gated as `gputui serve`
    gates it."""
    server = GatedServer(QUIET_APP, gate, host="127.0.0.1", port=0, title="gputui")
    async with TestClient(TestServer(await server._make_app())) as client:
        yield client
    # textual-serve never waits for a session's ended app: its process is reaped when
    # collected, which must happen while this test's event loop still runs.
    gc.collect()
    await asyncio.sleep(0)


def _paths(client: TestClient[Any, Any]) -> list[str]:
    """One path per route of the application, in its real router."""
    paths = {"/": "/", "/ws": "/ws", "/download/{key}": "/download/k", "/static": "/static/"}
    seen = []
    for resource in client.app.router.resources():
        info = resource.get_info()
        pattern = str(info.get("path") or info.get("formatter") or info.get("prefix"))
        seen.append(paths[pattern])  # a route added upstream fails here: gate it, list it
    return seen


ASSET = "/static/js/textual.js"
MISSING = "the access token is missing or wrong: open the address printed at start"


async def test_every_route_refuses_a_request_without_the_token(
    public_client: tuple[TestClient[Any, Any], str],
) -> None:
    client, _ = public_client
    paths = _paths(client)
    assert set(paths) == {"/", "/ws", "/download/k", "/static/"}
    for path in [*paths, ASSET]:
        response = await client.get(path)
        body = await response.text()
        assert response.status == 403, path
        assert (
            body
            == "gputui: the access token is missing or wrong: open the address printed at start\n"
        )
        assert "set-cookie" not in response.headers


async def test_a_wrong_token_is_refused_in_the_address_and_in_the_cookie(
    public_client: tuple[TestClient[Any, Any], str],
) -> None:
    client, token = public_client
    for wrong in (token[:-1], token + "x", "", token.upper() if token.upper() != token else "x"):
        assert (await client.get("/", params={"token": wrong})).status == 403
        cookie = {"Cookie": f"gputui_token_0={wrong}"}
        assert (await client.get(ASSET, headers=cookie)).status == 403
    # A right cookie does not rescue a wrong token in the address: the address is checked.
    both = {"Cookie": f"gputui_token_0={token}"}
    assert (await client.get("/", params={"token": "wrong"}, headers=both)).status == 403


async def test_the_right_token_serves_the_page_and_sets_the_cookie_its_requests_carry(
    public_client: tuple[TestClient[Any, Any], str],
) -> None:
    client, token = public_client
    response = await client.get("/", params={"token": token})
    assert response.status == 200
    page = await response.text()
    assert "textual.js" in page
    morsel = response.cookies["gputui_token_0"]
    assert morsel.value == token
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    # The page's own requests carry the cookie only (as a browser sends them).
    asset = await client.get(ASSET, headers={"Cookie": f"gputui_token_0={token}"})
    assert asset.status == 200 and len(await asset.read()) > 100_000


async def test_the_websocket_needs_the_token_and_the_page_s_own_origin(
    public_client: tuple[TestClient[Any, Any], str],
) -> None:
    client, token = public_client
    origin = str(client.make_url("/").origin())
    cookie = f"gputui_token_0={token}"
    refused = [
        {"Origin": origin},
        {"Origin": origin, "Cookie": "gputui_token_0=wrong"},
        {"Origin": "http://evil.example", "Cookie": cookie},
        {"Origin": "null", "Cookie": cookie},
    ]
    for headers in refused:
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await client.ws_connect("/ws", headers=headers)
        assert handshake.value.status == 403, headers
    socket_ = await client.ws_connect("/ws", headers={"Origin": origin, "Cookie": cookie})
    await socket_.close()


async def test_loopback_refuses_a_host_name_that_is_not_loopback() -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1."""
    async with gated_client(Gate(None, 0)) as client:
        port = client.port
        for host in (f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", f"10.0.0.1:{port}"):
            response = await client.get("/", headers={"Host": host})
            assert response.status == 403, host
            assert (
                await response.text() == "gputui: this server answers at a loopback address only\n"
            )
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await client.ws_connect("/ws", headers={"Host": f"evil.example:{port}"})
        assert handshake.value.status == 403
        # Any page may open a websocket to 127.0.0.1: only this server's own page is let in.
        with pytest.raises(aiohttp.WSServerHandshakeError) as cross:
            await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
        assert cross.value.status == 403


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
async def test_the_page_points_its_websocket_at_the_address_the_browser_used(name: str) -> None:
    async with gated_client(Gate(None, 0)) as client:
        host = f"{name}:{client.port}"
        response = await client.get("/", headers={"Host": host})
        assert response.status == 200
        urls = re.findall(r'data-session-websocket-url="([^"]+)"', await response.text())
        assert urls == [f"ws://{host}/ws"]
        socket_ = await client.ws_connect("/ws", headers={"Host": host, "Origin": f"http://{host}"})
        await socket_.close()


# The real command, as a user starts it.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gputui.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("gputui serve did not listen")


def test_the_command_serves_on_loopback_and_stops_on_ctrl_c() -> None:
    port = _free_port()
    process = _start("--demo", "2", "--port", str(port))
    try:
        _wait_listening(port, process)
        status, page = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "textual.js" in page
        assert _get(f"http://127.0.0.1:{port}/", host=f"evil.example:{port}")[0] == 403
        # A second server on the same port: one line, no traceback, nothing left running.
        taken = subprocess.run(
            [sys.executable, "-m", "gputui.cli", "serve", "--demo", "2", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert taken.returncode == 2
        assert taken.stderr.strip().splitlines() == [
            f"gputui: cannot listen on 127.0.0.1 port {port}: address already in use"
        ]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert f"gputui: serving the monitor at http://127.0.0.1:{port}/ (Ctrl+C stops)" in out
    assert "Traceback" not in err


def _descendants(pid: int) -> set[int]:
    """The processes below `pid` now (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_stopping_the_server_ends_the_open_sessions_apps() -> None:
    """A service manager's SIGTERM reaches the server alone (a terminal's Ctrl+C reaches the
    sessions' apps too): the server ends them, and at once rather than when browsers leave."""
    port = _free_port()
    process = _start("--demo", "1", "--port", str(port))
    apps: set[int] = set()  # the session's shell, its gputui demo and the demo's servers

    async def open_session() -> None:
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{port}/ws?width=100&height=30"
            async with client.ws_connect(url) as session:
                drawn = b""
                while b"sim-001" not in drawn:
                    message = await asyncio.wait_for(session.receive(), timeout=30)
                    assert message.type is aiohttp.WSMsgType.BINARY, message
                    drawn += message.data
                apps.update(_descendants(process.pid))
                assert apps
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                while (await asyncio.wait_for(session.receive(), timeout=15)).type not in ends:
                    pass  # the app's last frames
                assert time.monotonic() - started < 10

    try:
        _wait_listening(port, process)
        asyncio.run(open_session())
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
        survivors = _survivors(apps)
    assert not survivors, "a session's app outlived the server"


def _survivors(pids: set[int], wait_s: float = 2.0) -> set[int]:
    """Those of `pids` still running after `wait_s`, ended here (a failed test leaves none)."""
    deadline = time.monotonic() + wait_s
    while (alive := {p for p in pids if Path(f"/proc/{p}").exists()}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive
