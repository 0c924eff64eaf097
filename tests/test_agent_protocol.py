"""The agent's lines against the collector's decoder (docs/protocol.md).

Every line the agent writes decodes, and strictly: each key is a field of its struct (the
decoder itself ignores unknown keys, so this is checked here). Garbage and truncated lines
never raise out of the decoder.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gputui.agent import stream as agent_stream
from gputui.collect.lines import LineSplitter
from gputui.collect.protocol import MAX_LINE_BYTES, StreamDecoder
from gputui.collect.scenarios import load_scenario, scenario_names
from gputui.core.model import AgentError, Event, GpuInfo, GpuProcess, GpuReading, Hello, Sample
from tests.agent_sim import run_fast, scenario

TYPES: dict[str, type[msgspec.Struct]] = {
    "hello": Hello,
    "sample": Sample,
    "event": Event,
    "error": AgentError,
}


_DECODER = StreamDecoder()


@cache
def _fields(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


def assert_strict(line: bytes) -> None:
    """`line` decodes to its struct and carries no key the struct lacks, at any depth."""
    raw = json.loads(line)
    struct = TYPES[raw["type"]]
    assert set(raw) - {"type"} <= _fields(struct), raw["type"]
    if struct is Hello:
        for gpu in raw["gpus"]:
            assert set(gpu) <= _fields(GpuInfo)
    if struct is Sample:
        for gpu in raw["gpus"]:
            assert set(gpu) <= _fields(GpuReading)
            for proc in gpu.get("processes", []):
                assert set(proc) <= _fields(GpuProcess)
    assert not any(v is None for v in raw.values())  # absent, never null
    msg = _DECODER.decode(line)
    assert isinstance(msg, struct), _DECODER.stats.last_problem


@cache
def _stream_lines(name: str) -> tuple[bytes, ...]:
    stream = run_fast(load_scenario(name), until=300, slow_every=5)
    return tuple(stream.raw.splitlines())


@pytest.mark.parametrize("name", scenario_names())
def test_every_line_of_every_packaged_scenario_decodes_strictly(name: str) -> None:
    lines = _stream_lines(name)
    assert json.loads(lines[0])["type"] == "hello"
    for line in lines:
        assert len(line) < 64 * 1024
        assert_strict(line)


def test_error_lines_decode_strictly() -> None:
    stream = run_fast(scenario({"kind": "agent_crash", "at": 1.0}), until=5)
    assert stream.lines[-1]["type"] == "error"
    for line in stream.raw.splitlines():
        assert_strict(line)


def test_lines_are_compact_ascii_json() -> None:
    for line in _stream_lines("flaky")[:5]:
        assert b": " not in line and b", " not in line
        line.decode("ascii")


def _all_lines() -> list[bytes]:
    return [line for name in ("flaky", "ecc") for line in _stream_lines(name)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096))
def test_garbage_never_raises(data: bytes) -> None:
    decoder = StreamDecoder()
    assert decoder.decode(data) is None or decoder.stats.good == 1


@settings(max_examples=300)
@given(text=st.text(max_size=2000))
def test_random_text_never_raises(text: str) -> None:
    StreamDecoder().decode(text)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(value=_JSON, kind=st.sampled_from(["hello", "sample", "event", "error", "bogus"]))
def test_wrong_shapes_never_raise(value: Any, kind: str) -> None:
    doc = {"type": kind, "v": 1, "payload": value}
    if isinstance(value, dict):
        doc.update(value)
    StreamDecoder().decode(json.dumps(doc))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncated_real_lines_are_counted_not_raised(data: st.DataObject) -> None:
    lines = _all_lines()
    line = data.draw(st.sampled_from(lines))
    cut = data.draw(st.integers(min_value=1, max_value=len(line) - 1))
    decoder = StreamDecoder()
    assert decoder.decode(line[:cut]) is None
    assert decoder.stats.malformed == 1 and decoder.stats.good == 0


@settings(max_examples=200)
@given(data=st.data())
def test_corrupted_real_lines_never_raise(data: st.DataObject) -> None:
    line = bytearray(data.draw(st.sampled_from(_all_lines())))
    for _ in range(data.draw(st.integers(1, 5))):
        line[data.draw(st.integers(0, len(line) - 1))] = data.draw(st.integers(0, 255))
    StreamDecoder().decode(bytes(line))


def test_over_long_line_is_counted() -> None:
    decoder = StreamDecoder(max_line_bytes=1000)
    assert decoder.decode(_all_lines()[0] + b" " * 2000) is None
    assert decoder.stats.too_long == 1


def test_agent_writes_to_the_collectors_line_limit() -> None:
    # The agent keeps a copy of the limit (it imports nothing of gputui): the copy must agree.
    assert agent_stream.MAX_LINE_BYTES == MAX_LINE_BYTES


def test_a_line_dropped_by_the_splitter_is_recorded_as_the_decoder_would() -> None:
    split, direct = StreamDecoder(), StreamDecoder()
    line = b"x" * (MAX_LINE_BYTES + 1)
    LineSplitter(split.decode, split.too_long).feed(line + b"\n")
    assert direct.decode(line) is None
    for decoder in (split, direct):
        assert decoder.stats.too_long == 1
    assert split.stats.last_problem == direct.stats.last_problem
