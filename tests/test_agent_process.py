"""The agent as a process: what `gputui agent` prints, and how it ends.

Over SSH the channel is the agent's only tie to the collector, so these run the agent as a
real child process and cut its stdin or stdout the way a dying connection would.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import IO, Any

import pytest

from gputui.agent import main as agent_main
from gputui.agent.backend import Backend, BackendError
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import Event, Hello, Sample

CLI = [sys.executable, "-c", "from gputui.cli import main; main()"]
AGENT = [sys.executable, "-m", "gputui.agent"]


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def run_open(args: list[str], timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run to the end with stdin held open (as the SSH channel holds it): closing it would
    tell the agent to stop."""
    p = spawn(args)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    try:
        out = p.stdout.read()
        rc = p.wait(timeout=timeout)
    finally:
        p.stdin.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    return rc, out, p.stderr.read()


def read_line(stream: IO[bytes], timeout: float) -> bytes | None:
    """The next line, or None when none arrives within `timeout` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return None
    return stream.readline()


def scenario_json(*faults: dict[str, Any]) -> str:
    return json.dumps({"name": "proc", "gpus": 4, "fault": list(faults)})


@pytest.fixture
def reap() -> Any:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)


def test_gputui_agent_xid79_stream() -> None:
    """The issue's acceptance run, as a user types it."""
    args = ["agent", "--backend", "sim", "--scenario", "xid79"]
    args += ["--interval", "0.2", "--duration", "5"]
    rc, out, err = run_open(CLI + args)
    assert rc == 0, err
    decoder = StreamDecoder()
    msgs = [decoder.decode(line) for line in out.splitlines()]
    assert decoder.stats.bad == 0
    hello = msgs[0]
    assert isinstance(hello, Hello) and hello.backend == "sim" and len(hello.gpus) == 8
    samples = [m for m in msgs if isinstance(m, Sample)]
    assert len(samples) >= 20  # 5 s at 0.2 s
    assert all(len(s.gpus) == 8 for s in samples)
    start = samples[0].t
    (xid,) = [m for m in msgs if isinstance(m, Event) and m.kind == "xid"]
    assert xid.xid == 79 and xid.gpu == 3
    assert 1.5 <= xid.t - start <= 3.5
    lost = [s for s in samples if s.gpus[3].status == "lost"]
    assert lost and lost[0].t - start <= 3.5
    for s in lost:
        assert all(g.temp_c is not None for g in s.gpus if g.index != 3)
    assert samples[-1].gpus[3].status == "lost"
    assert any(isinstance(m, Event) and m.kind == "gpu_lost" and m.gpu == 3 for m in msgs)


def test_once_prints_hello_and_one_full_sample() -> None:
    rc, out, _ = run_open([*AGENT, "--backend", "sim", "--once"])
    assert rc == 0
    hello, sample = (json.loads(line) for line in out.splitlines())
    assert hello["type"] == "hello" and sample["type"] == "sample"
    assert sample["slow"] is True and "pcie_gen" in sample["gpus"][0]


def test_exits_promptly_when_stdin_closes(reap: Any) -> None:
    p = spawn([*AGENT, "--backend", "sim", "--interval", "0.2"])
    reap(p)
    assert p.stdout is not None and p.stdin is not None
    assert b'"hello"' in (read_line(p.stdout, 10) or b"")
    p.stdin.close()
    began = time.monotonic()
    assert p.wait(timeout=5) == 0
    assert time.monotonic() - began < 2.0


def test_exits_promptly_and_quietly_on_broken_pipe(reap: Any) -> None:
    p = spawn([*AGENT, "--backend", "sim", "--interval", "0.2"])
    reap(p)
    assert p.stdout is not None and p.stderr is not None
    assert b'"hello"' in (read_line(p.stdout, 10) or b"")
    p.stdout.close()  # the reader goes away; stdin stays open
    began = time.monotonic()
    assert p.wait(timeout=5) == 0
    assert time.monotonic() - began < 2.0
    err = p.stderr.read()
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_sigterm_ends_the_stream(reap: Any) -> None:
    p = spawn([*AGENT, "--backend", "sim", "--interval", "0.2"])
    reap(p)
    assert p.stdout is not None
    assert b'"hello"' in (read_line(p.stdout, 10) or b"")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=3) == 0


def test_agent_crash_exits_non_zero_after_an_error_line() -> None:
    faults = scenario_json({"kind": "agent_crash", "at": 0.5})
    rc, out, _ = run_open(
        [*AGENT, "--backend", "sim", "--interval", "0.1", "--scenario-json", faults]
    )
    assert rc == 1
    last = json.loads(out.splitlines()[-1])
    assert last["type"] == "error" and last["code"] == "agent_crash" and last["fatal"] is True


def test_hang_keeps_the_channel_open_until_stdin_closes(reap: Any) -> None:
    faults = scenario_json({"kind": "hang", "at": 0.5})
    p = spawn([*AGENT, "--backend", "sim", "--interval", "0.1", "--scenario-json", faults])
    reap(p)
    assert p.stdout is not None and p.stdin is not None
    lines = 0
    while read_line(p.stdout, 1.0) is not None:  # until a second of silence
        lines += 1
        assert lines < 100, "the agent never went quiet"
    assert lines >= 3  # hello and a few samples before the hang
    time.sleep(0.5)
    assert p.poll() is None  # silent but alive, as a hung agent is
    p.stdin.close()
    assert p.wait(timeout=3) == 0


def test_bad_scenario_json_is_a_fatal_error_line() -> None:
    rc, out, _ = run_open([*AGENT, "--backend", "sim", "--scenario-json", '{"gpus": 0}'])
    assert rc == 2
    (line,) = out.splitlines()
    err = json.loads(line)
    assert err["code"] == "bad_scenario" and "gpus" in err["text"] and err["fatal"] is True


class _Dummy(Backend):
    name = "smi"


def test_auto_falls_back_to_smi_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_nvml(event_thread: bool = True) -> Backend:
        raise BackendError("nvml_init_failed", "no driver")

    monkeypatch.setattr(agent_main, "_nvml_backend", no_nvml)
    monkeypatch.setattr(agent_main, "_smi_backend", lambda interval_s: _Dummy())
    args = agent_main.build_parser().parse_args(["--backend", "auto"])
    assert isinstance(agent_main.pick_backend(args), _Dummy)
    assert "using the smi backend" in capsys.readouterr().err


def test_auto_with_no_backend_fails_with_both_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: Any) -> Backend:
        raise BackendError("x", "nope")

    monkeypatch.setattr(agent_main, "_nvml_backend", fail)
    monkeypatch.setattr(agent_main, "_smi_backend", fail)
    args = agent_main.build_parser().parse_args([])
    with pytest.raises(BackendError) as info:
        agent_main.pick_backend(args)
    assert info.value.code == "no_backend"
    assert "nvml: nope" in info.value.text and "smi: nope" in info.value.text


def test_no_process_is_left_behind(reap: Any) -> None:
    p = spawn([*AGENT, "--backend", "sim", "--interval", "0.2"])
    reap(p)
    assert p.stdout is not None and p.stdin is not None
    read_line(p.stdout, 10)
    p.stdin.close()
    p.wait(timeout=5)
    with pytest.raises(ProcessLookupError):
        os.kill(p.pid, 0)
