"""Checks of the `[source]` table's values that a schema cannot state: the URL and the selector."""

from __future__ import annotations

import json
import urllib.parse


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a Prometheus API base, or None when it can."""
    if not url:
        return 'kind = "prometheus" needs url = "http://HOST:9090" (the Prometheus to read)'
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL with a host, got {json.dumps(url)}"
    if parts.query or parts.fragment:
        return f"expected a URL without ?query or #fragment, got {json.dumps(url)}"
    if parts.path.rstrip("/").endswith("/api/v1"):
        return (
            f"give the Prometheus base URL without /api/v1 (gputui adds it), got {json.dumps(url)}"
        )
    return None


def selector_problem(selector: str) -> str | None:
    """Why `selector` cannot be put inside a query's braces, or None when it can.

    Only the shape is checked here; Prometheus itself judges the matchers at the first query
    and its words are shown then."""
    if any(c in selector for c in "{}\n\r"):
        return (
            'expected label matchers without braces, e.g. \'cluster="a", Hostname=~"gpu.*"\', '
            f"got {json.dumps(selector)}"
        )
    if not any(op in selector for op in ("=", "!=", "=~", "!~")):
        return f"expected label matchers such as 'cluster=\"a\"', got {json.dumps(selector)}"
    return None
