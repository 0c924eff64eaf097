"""The frames a collector worker and its parent exchange on the worker's stdin and stdout.

Each frame is a 4-byte big-endian length and that many bytes of msgpack (msgspec), a tagged
struct. Down (parent -> worker): `Start` first, then operator commands and `Stop`. Up (worker
-> parent): one `Delta` per published snapshot of the worker's monitor: the hosts whose
snapshot changed (less a hello or slow sample already sent), the new events, and every
history point recorded since the last frame.
"""

from __future__ import annotations

import struct
from pathlib import Path, PurePath
from typing import Any

import msgspec

from gputui.collect.recipes import HostRecipe
from gputui.config import SshSettings
from gputui.core.health import Thresholds
from gputui.core.model import FleetEvent, GpuInfo, HostSnapshot

_LENGTH = struct.Struct(">I")
#: The largest frame accepted: a delta of a whole shard of 8-GPU hosts is a few MB at most.
MAX_FRAME_BYTES = 256 * 1024 * 1024


class Start(msgspec.Struct, tag="start", kw_only=True, frozen=True):
    """The worker's shard and how to run it; the first frame down."""

    worker: int  # the worker's number, from 1, as messages name it
    hosts: list[HostRecipe]
    ssh: SshSettings | None = None  # None: every host is `localhost`
    thresholds: Thresholds | None = None
    tick_s: float | None = None
    history_len: int = 0  # points the worker's rings hold between frames; 0: no history


class MarkFailed(msgspec.Struct, tag="mark", kw_only=True, frozen=True):
    host: str
    marked: bool


class InPlaceOf(msgspec.Struct, tag="in_place_of", kw_only=True, frozen=True):
    host: str
    node: str | None


class Clear(msgspec.Struct, tag="clear", kw_only=True, frozen=True):
    host: str
    gpu: int | None = None


class Watch(msgspec.Struct, tag="watch", kw_only=True, frozen=True):
    hosts: list[str]  # exactly these list processes in every sample


class Stop(msgspec.Struct, tag="stop", kw_only=True, frozen=True):
    pass


Command = MarkFailed | InPlaceOf | Clear | Watch | Stop
Down = Start | Command


class Points(msgspec.Struct, kw_only=True, frozen=True, array_like=True):
    """A host's history points since the last frame: times and float32 values (GPUs x metrics
    x points, C order), the layout of collect/history.py's rings."""

    host: str
    new_ring: bool  # the host's rings were made anew (at a hello): its GPUs follow
    gpus: list[GpuInfo]  # with a new ring: the GPUs the rows are of, in order
    times: list[float]
    values: bytes


class Delta(msgspec.Struct, tag="delta", kw_only=True, frozen=True):
    t: float
    # Only the hosts whose snapshot changed since the last frame. A host named in `same_hello`
    # (`same_slow`) comes without its hello (slow sample): it is the one this worker sent
    # last. They change at a reconnect and every few seconds, and are four fifths of an 8-GPU
    # host's snapshot: sent every tick they made encoding, the pipe and decoding in the UI's
    # process cost more than reading the host's stream.
    hosts: list[HostSnapshot]
    same_hello: list[str] = msgspec.field(default_factory=list)
    same_slow: list[str] = msgspec.field(default_factory=list)
    events: list[FleetEvent]
    points: list[Points]
    answered: list[str]  # hosts that answered (sampled or failed) for the first time
    urgent: bool = False  # published at once by the worker: publish it at once too


Up = Delta


class FrameError(Exception):
    """A frame that cannot be read: its words say what was wrong."""


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, PurePath):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is Path and isinstance(obj, str):
        return Path(obj)
    if kind is object:  # a scenario's values: as msgpack gave them
        return obj
    raise NotImplementedError(f"cannot decode {kind}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def encode(frame: Down | Up) -> bytes:
    body = _encoder.encode(frame)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frames of `kind`; raises FrameError on the first bad one."""

    def __init__(self, kind: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(kind, dec_hook=_dec_hook)
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        frames = []
        buf = self._buf
        at = 0
        while len(buf) - at >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buf, at)
            if size > MAX_FRAME_BYTES:
                raise FrameError(f"a frame of {size} bytes, past the limit of {MAX_FRAME_BYTES}")
            end = at + _LENGTH.size + size
            if len(buf) < end:
                break
            try:
                frames.append(self._decoder.decode(memoryview(buf)[at + _LENGTH.size : end]))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise FrameError(f"a frame that does not decode: {exc}") from None
            at = end
        del buf[:at]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame begun and not finished."""
        return len(self._buf)


def down_reader() -> FrameReader:
    return FrameReader(Down)


def up_reader() -> FrameReader:
    return FrameReader(Up)
