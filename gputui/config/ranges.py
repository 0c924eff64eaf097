"""Host ranges in the syntax Slurm and pdsh users already type: `gpu[001-128]`, lists, products.

Expansion is ClusterShell's NodeSet, so `rack[1-2]-gpu[01-08]`, `gpu[1,3,5-8]`, and its set
operators (`gpu[1-8]!gpu3` excludes, `&` intersects, `^` is the symmetric difference) mean what
they mean in `nodeset -e`. Zero padding is kept: `gpu[001-003]` gives gpu001, gpu002, gpu003.

Two things differ from a bare NodeSet on purpose:
- Node groups (`@name`) are not resolved: a ClusterShell groups.conf may run external commands
  and differs between machines, and a hosts file must mean the same thing everywhere.
- A plain comma list keeps the order it was written in (NodeSet sorts), so hosts appear in
  the order of the file, and a name given twice in one entry is reported instead of merged.
"""

from __future__ import annotations

import re

from ClusterShell.NodeSet import (
    RESOLVER_NOGROUP,
    NodeSet,
    NodeSetException,
    NodeSetParseRangeError,
)

# A typo such as gpu[1-100000] for gpu[1-1000] would otherwise allocate and then try to reach
# a hundred thousand hosts. One process is built for thousands of streams; past that the
# fleet is read from Prometheus, so a bound well above that is a mistake, not a fleet.
MAX_HOSTS = 50_000

_SET_OPERATORS = frozenset("!&^")
_WHITESPACE = re.compile(r"\s")


class HostRangeError(ValueError):
    """A host entry that does not expand to valid host names; str() says why."""


def split_entry(entry: str) -> list[str]:
    """The comma-separated parts of `entry` outside brackets: "a[1,2],b" -> ["a[1,2]", "b"]."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(entry):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(entry[start:i])
            start = i + 1
    parts.append(entry[start:])
    return parts


_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_SPAN = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*(?:/\s*(\d+)\s*)?$")


def _check_spans(text: str, budget: int, limit: int) -> None:
    """Refuse a bracket of more than `budget` numbers before ClusterShell sees it.

    ClusterShell builds every number of a range in memory while parsing, so gpu[1-1000000000]
    would exhaust memory before NodeSet's len() could be checked.
    """
    for bracket in _BRACKET.finditer(text):
        total = 0
        for item in bracket[1].split(","):
            span = _SPAN.match(item)
            if span:
                step = max(int(span[3] or 1), 1)
                total += max(int(span[2]) - int(span[1]), 0) // step + 1
            else:
                total += 1
            if total > budget:
                raise HostRangeError(f"expands to more than {limit} hosts, the most gputui watches")


def _nodeset(text: str) -> NodeSet:
    try:
        return NodeSet(text, resolver=RESOLVER_NOGROUP)
    except NodeSetException as exc:
        raise HostRangeError(f"not a valid host range: {_clustershell_reason(exc)}") from None
    except ValueError:
        # Some malformed brackets ("[--^[ -b-1:]") escape ClusterShell as a bare ValueError.
        raise HostRangeError("not a valid host range") from None


def _clustershell_reason(exc: NodeSetException) -> str:
    # A range error reads `bad range: "invalid values in range : "3-1""`; its `part` is the
    # clause that matters, and without the stray space it reads as one clause of our sentence.
    part = getattr(exc, "part", None)
    if isinstance(exc, NodeSetParseRangeError) and isinstance(part, str) and part:
        return part.replace(" : ", ": ")
    return str(exc)


def check_host_name(name: str) -> None:
    """Raise HostRangeError when `name` cannot be an SSH alias or host name.

    Only what is surely a mistake is refused; anything else is the SSH config's business.
    """
    if not name:
        raise HostRangeError("empty host name")
    if _WHITESPACE.search(name) or not name.isprintable():
        raise HostRangeError(f"host name {name!r} contains white space or control characters")
    if name.startswith("@"):
        raise HostRangeError(
            f"{name} looks like a ClusterShell node group; groups are not read from "
            "groups.conf: list the hosts, or make a [groups.NAME] table"
        )
    if "@" in name:
        raise HostRangeError(
            f"{name} has a user name; set User for this host in ~/.ssh/config instead"
        )
    if name.count(":") == 1:
        # One colon is host:port; IPv6 literals have at least two.
        raise HostRangeError(f"{name} has a port; set Port for this host in ~/.ssh/config instead")
    if name.startswith("-"):
        raise HostRangeError(f"host name {name} starts with '-'")
    if "/" in name:
        raise HostRangeError(f"host name {name} contains '/'")


def expand_hosts(
    entry: str, limit: int = MAX_HOSTS, *, allow_duplicates: bool = False
) -> list[str]:
    """Every host name `entry` stands for, in the order written, padding preserved.

    Raises HostRangeError for a range that does not parse, an empty entry, a name that cannot
    be a host, more than `limit` names, or (unless `allow_duplicates`) a name given twice;
    with `allow_duplicates` a repeated name is kept once.
    """
    if not entry.strip():
        raise HostRangeError("empty host entry")
    # With set operators the entry only has a meaning as a whole set (its order is NodeSet's).
    parts = [entry] if _SET_OPERATORS & set(entry) else split_entry(entry)
    names: list[str] = []
    seen: set[str] = set()
    for part in parts:
        if not part.strip():
            raise HostRangeError("empty item in a comma list")
        _check_spans(part, limit - len(names), limit)
        nodes = _nodeset(part.strip())
        if len(nodes) == 0:
            raise HostRangeError("expands to no hosts")
        # len() of a NodeSet is computed from the ranges, so the bound holds before expanding.
        if len(names) + len(nodes) > limit:
            raise HostRangeError(f"expands to more than {limit} hosts, the most gputui watches")
        for name in nodes:
            check_host_name(name)
            if name in seen:
                if allow_duplicates:
                    continue
                raise HostRangeError(f"{name} is listed twice in this entry")
            seen.add(name)
            names.append(name)
    return names


def fold_hosts(names: list[str]) -> str:
    """The shortest range expression for `names`: ["gpu1", "gpu2", "gpu3"] -> "gpu[1-3]"."""
    return str(NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP))
