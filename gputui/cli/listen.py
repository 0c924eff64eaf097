"""Addresses the servers of gputui listen on: `HOST:PORT` read, and loopback told apart.

`gputui serve` and `gputui exporter` bind loopback unless told otherwise, because what they
serve (the fleet's controls; its hardware inventory and health) is not for every machine on the
network. Only the standard library here: both commands import it before their servers load.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine's
    loopback. Only the name `localhost` counts among names: another name may resolve anywhere."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets: `[::1]:9835`) -> (host, port); ValueError in words.

    The host must be written: an empty one (`:9835`) would bind every interface without saying
    so. Port 0 asks the system for a free port (the command prints the one it got)."""
    host, colon, port_text = text.strip().rpartition(":")
    if not colon:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9835), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address takes brackets, as in [::1]:9835; got {text!r}")
    if not host:
        raise ValueError(
            f"{text!r} names no address: write 127.0.0.1:PORT for this machine only, or "
            "0.0.0.0:PORT for every interface"
        )
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"the port in {text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"the port in {text!r} must be 0 to 65535")
    return host, port
