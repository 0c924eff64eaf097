"""`--shard K/N`: the part of the configured fleet that one of N gputui processes watches.

A host belongs to shard K of N when a stable hash of its name, modulo N, is K-1: the hash
Prometheus' own `hashmod` relabelling uses (the last 8 bytes of the name's MD5, big-endian,
modulo N). So N exporters on N machines, each given the same hosts.toml and its own K, watch
every host exactly once, and:
- adding or removing a host moves no other host to another shard (with positions in the list,
  every host after it would move, and its series with it, from one exporter to the next);
- two machines that briefly read different versions of hosts.toml (a rolling update) still
  agree on every host both files list;
- the split can be checked in Prometheus with `hashmod` over the `host` label.
The price is balance on small fleets: a hash spreads hosts about evenly only over many hosts
(docs/prometheus.md shows the split of a 128-host range).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SHARDS = 10_000


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, host: str) -> bool:
        """Whether `host` (its name as hosts.toml lists it) belongs to this shard."""
        return shard_of(host, self.count) == self.index

    def select(self, names: Sequence[str]) -> list[str]:
        """The names of `names` in this shard, in their order."""
        return [name for name in names if self.holds(name)]


def shard_of(host: str, count: int) -> int:
    """The shard (1..count) that holds `host`: Prometheus' hashmod of its name, plus one."""
    digest = hashlib.md5(host.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % count + 1


def parse_shard(text: str) -> Shard:
    """`K/N` -> Shard(K, N); ValueError with the reason in words."""
    index_text, slash, count_text = text.strip().partition("/")
    try:
        if not slash:
            raise ValueError
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(
            f"expected K/N (this process takes shard K of N, e.g. 1/3), got {text!r}"
        ) from None
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"the number of shards N in {text!r} must be 1 to {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise ValueError(f"the shard K in {text!r} must be 1 to {count} (K/N counts from 1)")
    return Shard(index, count)
