"""The run loop and the line writer, with a scripted backend."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from gputui.agent.backend import Backend, BackendError, Json
from gputui.agent.runner import EXIT_BACKEND, Runner
from gputui.agent.stream import MAX_LINE_BYTES, StreamWriter, encode


class Scripted(Backend):
    name = "nvml"

    def __init__(self, failures: list[BaseException | None]) -> None:
        self.failures = failures
        self.closed = False

    def hello(self) -> Json:
        return {"gpus": [{"index": 0, "uuid": "GPU-x", "name": "test"}]}

    def sample(self, slow: bool) -> Json:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return {"gpus": [{"index": 0, "temp_c": 40.0, "util_pct": None}]}

    def close(self) -> None:
        self.closed = True


class Instant(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


def run(backend: Backend, **kw: Any) -> tuple[int, list[dict[str, Any]]]:
    stop = Instant()
    out = io.BytesIO()
    kw.setdefault("duration_s", None)
    runner = Runner(backend, StreamWriter(out, stop), stop, host="h", **kw)
    if kw["duration_s"] is None:
        runner.once = True
    rc = runner.run()
    return rc, [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_bug_in_sampling_is_reported_once_and_sampling_goes_on() -> None:
    clock = iter(range(100))
    backend = Scripted([ValueError("boom"), ValueError("boom"), None])
    rc, lines = run(backend, duration_s=5, monotonic=lambda: float(next(clock)))
    assert rc == 0 and backend.closed
    errors = [m for m in lines if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "sample_failed" and "fatal" not in errors[0]
    # The failed samples leave gaps in seq, which is how a reader knows samples are missing.
    assert [m["seq"] for m in lines if m["type"] == "sample"] == [2, 3, 4]


def test_a_backend_that_cannot_go_on_ends_the_stream() -> None:
    backend = Scripted([BackendError("smi_exited", "nvidia-smi exited with status 1")])
    rc, lines = run(backend)
    assert rc == EXIT_BACKEND and backend.closed
    assert lines[-1] == {
        "type": "error",
        "v": 1,
        "t": lines[-1]["t"],
        "code": "smi_exited",
        "text": "nvidia-smi exited with status 1",
        "fatal": True,
    }


def test_none_fields_are_left_out() -> None:
    _, lines = run(Scripted([]))
    assert lines[1]["gpus"] == [{"index": 0, "temp_c": 40.0}]
    assert lines[1]["slow"] is True  # --once reads the slow fields


def test_hello_failure_is_fatal() -> None:
    class NoGpu(Scripted):
        def hello(self) -> Json:
            raise BackendError("no_gpu", "NVML sees no GPU on this host")

    rc, lines = run(NoGpu([]))
    assert rc == EXIT_BACKEND
    assert [(m["type"], m["code"], m["fatal"]) for m in lines] == [("error", "no_gpu", True)]


def test_writer_stops_everything_when_the_reader_is_gone() -> None:
    class Gone(io.BytesIO):
        def write(self, data: Any) -> int:
            raise BrokenPipeError

    stop = threading.Event()
    writer = StreamWriter(Gone(), stop)
    assert writer.write({"type": "sample"}) is False
    assert writer.closed and stop.is_set()
    assert writer.write({"type": "sample"}) is False


def test_writer_replaces_an_over_long_line_with_an_error() -> None:
    out = io.BytesIO()
    writer = StreamWriter(out, threading.Event())
    assert writer.write({"type": "sample", "v": 1, "t": 1.0, "blob": "x" * MAX_LINE_BYTES})
    err = json.loads(out.getvalue())
    assert err["type"] == "error" and err["code"] == "line_too_long"


def test_encode_is_compact_and_ascii() -> None:
    assert encode({"type": "event", "text": "Température", "gpu": None}) == (
        b'{"type":"event","text":"Temp\\u00e9rature"}\n'
    )


class HeldEvents(Scripted):
    """A backend without an event thread: its events wait until pumped."""

    def __init__(self) -> None:
        super().__init__([])
        self.held: list[Json] = [{"kind": "xid", "gpu": 0, "xid": 79, "text": "Xid 79 on GPU 0"}]

    def pump_events(self) -> int:
        assert self._emit is not None
        delivered, self.held = self.held, []
        for event in delivered:
            self._emit(event)
        return len(delivered)


def test_once_pumps_the_held_events_before_its_sample() -> None:
    rc, lines = run(HeldEvents(), pump_events=True)
    assert rc == 0
    assert [ln["type"] for ln in lines] == ["hello", "event", "sample"]
    assert lines[1]["xid"] == 79


def test_without_pumping_held_events_stay_held() -> None:
    backend = HeldEvents()
    _rc, lines = run(backend)
    assert [ln["type"] for ln in lines] == ["hello", "sample"]
    assert backend.held  # a threaded backend delivers its own; none is pumped here


def test_the_agent_once_starts_no_event_thread() -> None:
    """--once reads NVML's events in its own thread before the sample: an event thread would
    hold its exit for up to its 0.5 s NVML wait."""
    from gputui.agent.main import build_parser, pick_backend

    for once, threaded in ((["--once"], False), ([], True)):
        backend = pick_backend(build_parser().parse_args(["--backend", "sim", *once]))
        before = {t.name for t in threading.enumerate()}
        backend.start_events(lambda _event: None)
        started = {t.name for t in threading.enumerate()} - before
        backend.close()
        assert ("nvml-events" in started) is threaded, (once, started)
