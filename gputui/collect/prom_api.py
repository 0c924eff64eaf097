"""Prometheus' HTTP query API: one instant query, decoded into typed structs, or a clear reason.

The stdlib's urllib runs in a worker thread (asyncio.to_thread): gputui has no HTTP client
among its dependencies, and a fleet costs one request per metric family per tick, not one per
host, so a thread per request in flight (bounded by the caller) is cheap. Every failure becomes
a `PromError` whose text names the server and says what to check: a refused connection, a
wrong URL, a 401/403, a timeout, a body that is not Prometheus' JSON, or Prometheus' own error.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Literal

import msgspec

from gputui.config.model import PromSettings
from gputui.core.text import plain

#: The longest body read from a query: a 10,000-host fleet's family is ~80,000 series of
#: ~300 bytes. Past it the answer is refused rather than held.
MAX_BODY_BYTES = 256 << 20
_ERROR_CHARS = 200


class PromError(Exception):
    """A query that gave no result, in words for the operator."""


class VectorSample(msgspec.Struct, frozen=True, gc=False):
    """One series of an instant vector: its labels and [evaluation time, value as text]."""

    metric: dict[str, str]
    value: tuple[float, str]


class VectorData(msgspec.Struct, frozen=True, gc=False):
    resultType: str
    result: list[VectorSample]


class QueryResponse(msgspec.Struct, frozen=True, gc=False):
    """`/api/v1/query`'s envelope: data on success, errorType and error otherwise."""

    status: Literal["success", "error"]
    data: VectorData | None = None
    errorType: str | None = None
    error: str | None = None


_DECODER = msgspec.json.Decoder(QueryResponse)


def _secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PromError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None


class PromClient:
    """Instant queries against one Prometheus (or Thanos, Mimir, VictoriaMetrics)."""

    def __init__(self, settings: PromSettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self._ssl = self._ssl_context(settings)

    @staticmethod
    def _ssl_context(settings: PromSettings) -> ssl.SSLContext | None:
        if not settings.url.startswith("https:"):
            return None
        ctx = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file is not None else None
        )
        if settings.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _headers(self) -> dict[str, str]:
        # Secrets are read at each request: a rotated token file is picked up at once.
        s = self.settings
        headers = {"Accept": "application/json", "User-Agent": "gputui"}
        if s.bearer_token_file is not None:
            headers["Authorization"] = "Bearer " + _secret(s.bearer_token_file, "bearer token")
        elif s.basic_auth_user is not None and s.basic_auth_password_file is not None:
            password = _secret(s.basic_auth_password_file, "basic auth password")
            pair = f"{s.basic_auth_user}:{password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    async def query(self, promql: str) -> tuple[float, list[VectorSample]]:
        """The instant vector of `promql` now: (Prometheus' evaluation time, series)."""
        return await asyncio.to_thread(self.query_blocking, promql)

    def query_blocking(self, promql: str) -> tuple[float, list[VectorSample]]:
        body = urllib.parse.urlencode({"query": promql}).encode()
        url = f"{self.base}/api/v1/query"
        request = urllib.request.Request(url, data=body, headers=self._headers(), method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        raw = self._fetch(request)
        try:
            reply = _DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            head = plain(raw[:80].decode("utf-8", "replace"), 80)
            raise PromError(
                f"{self.base} did not answer as a Prometheus API (the body is not its JSON: "
                f"{json.dumps(head)}); check url"
            ) from None
        return self._vector(reply, promql)

    def _fetch(self, request: urllib.request.Request) -> bytes:
        timeout = self.settings.timeout_s
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl) as reply:
                data: bytes = reply.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except urllib.error.URLError as exc:
            raise PromError(self._url_error(exc.reason)) from None
        except TimeoutError:
            raise PromError(
                f"{self.base} did not answer within timeout_s = {timeout:g} s"
            ) from None
        except (http.client.HTTPException, OSError) as exc:
            raise PromError(f"{self.base}: {type(exc).__name__}: {plain(str(exc), 120)}") from None
        if len(data) > MAX_BODY_BYTES:
            raise PromError(
                f"{self.base} answered with more than {MAX_BODY_BYTES >> 20} MiB; narrow it with "
                "selector"
            )
        return data

    def _http_error(self, exc: urllib.error.HTTPError) -> PromError:
        code = exc.code
        if code in (401, 403):
            how = (
                "bearer_token_file"
                if self.settings.bearer_token_file is not None
                else "basic_auth_user and basic_auth_password_file"
                if self.settings.basic_auth_user is not None
                else "no credentials were sent: set basic_auth_* or bearer_token_file"
            )
            word = "unauthorized" if code == 401 else "forbidden"
            return PromError(f"{self.base} refused the query: HTTP {code} {word}; check {how}")
        if code == 404:
            return PromError(
                f"{self.base} has no /api/v1/query (HTTP 404): check url (the Prometheus "
                "base URL, e.g. http://prometheus:9090, with its path prefix if it has one)"
            )
        # Prometheus answers a bad query (400, 422) or a timeout (503) with its JSON error.
        try:
            raw = exc.read(64 << 10)
        except OSError:
            raw = b""
        try:
            reply = _DECODER.decode(raw)
            said = f"{reply.errorType}: {reply.error}"
        except (msgspec.DecodeError, msgspec.ValidationError):
            said = f"{exc.reason} (not Prometheus' own error; check url)"
        return PromError(f"{self.base} answered HTTP {code}: {plain(said, _ERROR_CHARS)}")

    def _url_error(self, reason: object) -> str:
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"{self.base} did not answer within timeout_s = {self.settings.timeout_s:g} s"
        if isinstance(reason, ConnectionRefusedError):
            return f"cannot reach {self.base}: connection refused (is Prometheus running there?)"
        if isinstance(reason, socket.gaierror):
            return f"cannot reach {self.base}: unknown host ({reason.strerror})"
        if isinstance(reason, ssl.SSLCertVerificationError):
            return (
                f"cannot reach {self.base}: TLS certificate not trusted ({reason.verify_message});"
                " set ca_file"
            )
        text = getattr(reason, "strerror", None) or str(reason)
        return f"cannot reach {self.base}: {plain(str(text), _ERROR_CHARS)}"

    def _vector(self, reply: QueryResponse, promql: str) -> tuple[float, list[VectorSample]]:
        if reply.status != "success" or reply.data is None:
            said = plain(f"{reply.errorType}: {reply.error}", _ERROR_CHARS)
            raise PromError(f"{self.base} refused the query {json.dumps(promql)}: {said}")
        data = reply.data
        if data.resultType != "vector":
            raise PromError(
                f"{self.base} answered a {data.resultType}, not an instant vector, "
                f"to {json.dumps(promql)}"
            )
        # Every series of one instant query carries the same evaluation time.
        now = data.result[0].value[0] if data.result else float("nan")
        return now, data.result
