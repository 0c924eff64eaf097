"""Host ranges: what Slurm and pdsh users type expands as they expect, padding included."""

from __future__ import annotations

import pytest
from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.config.ranges import HostRangeError, expand_hosts, fold_hosts, split_entry

# Prefixes end in a letter or '-', so the number that follows is the whole range value.
prefixes = st.from_regex(r"[a-z][a-z0-9]{0,5}[a-z-]", fullmatch=True)


@st.composite
def bracket(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A bracket such as `[001-004,010]` and the suffixes it stands for, sorted."""
    width = draw(st.integers(0, 4))  # 0: no padding ("9-10" crosses a digit)
    top = 10**width - 1 if width else 999
    numbers = sorted(draw(st.sets(st.integers(0, top), min_size=1, max_size=25)))
    fmt = (lambda n: str(n).zfill(width)) if width else str
    items: list[str] = []
    run = [numbers[0]]
    for n in [*numbers[1:], None]:
        if n is not None and n == run[-1] + 1:
            run.append(n)
            continue
        # Consecutive numbers become a span, or stay a list, at hypothesis's choice.
        if len(run) > 1 and draw(st.booleans()):
            items.append(f"{fmt(run[0])}-{fmt(run[-1])}")
        else:
            items.extend(fmt(x) for x in run)
        if n is not None:
            run = [n]
    return "[" + ",".join(items) + "]", [fmt(n) for n in numbers]


@st.composite
def host_range(draw: st.DrawFn) -> tuple[str, list[str]]:
    """`pre[..]`, `pre[..]-mid[..]` or a plain name, and its expansion in NodeSet order."""
    dims = draw(st.integers(0, 2))
    pattern = draw(prefixes)
    names = [pattern]
    for i in range(dims):
        text, suffixes = draw(bracket())
        pattern += text
        names = [n + s for n in names for s in suffixes]
        if i + 1 < dims:
            sep = draw(st.sampled_from(["-", "-gpu", "n"]))
            pattern += sep
            names = [n + sep for n in names]
    return pattern, names


@settings(max_examples=300, deadline=None)
@given(host_range())
def test_a_range_expands_to_every_name_with_its_padding(case: tuple[str, list[str]]) -> None:
    pattern, expected = case
    names = expand_hosts(pattern)
    assert names == expected
    assert len(names) == len(NodeSet(pattern, resolver=RESOLVER_NOGROUP))


@settings(max_examples=300, deadline=None)
@given(host_range())
def test_folding_the_expansion_round_trips(case: tuple[str, list[str]]) -> None:
    pattern, _ = case
    names = expand_hosts(pattern)
    folded = fold_hosts(names)
    assert NodeSet(folded, resolver=RESOLVER_NOGROUP) == NodeSet(pattern, resolver=RESOLVER_NOGROUP)
    assert sorted(expand_hosts(folded)) == sorted(names)


@settings(max_examples=200, deadline=None)
@given(st.lists(host_range(), min_size=1, max_size=4, unique_by=lambda c: c[0].split("[")[0]))
def test_a_comma_list_keeps_the_order_written(cases: list[tuple[str, list[str]]]) -> None:
    # Distinct prefixes rarely collide; when two parts do give one name, that is an error.
    entry = ",".join(pattern for pattern, _ in cases)
    expected = [name for _, names in cases for name in names]
    if len(set(expected)) < len(expected):
        with pytest.raises(HostRangeError, match="listed twice"):
            expand_hosts(entry)
    else:
        assert expand_hosts(entry) == expected


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab01-[],!&^@: .9x", max_size=16))
def test_any_text_expands_or_raises_host_range_error(text: str) -> None:
    try:
        names = expand_hosts(text, limit=5000)
    except HostRangeError as exc:
        assert str(exc)
    else:
        assert names and all(names)


@pytest.mark.parametrize(
    ("entry", "first", "last", "count"),
    [
        ("gpu[001-128]", "gpu001", "gpu128", 128),
        ("rack[1-2]-gpu[01-08]", "rack1-gpu01", "rack2-gpu08", 16),
        ("gpu[099-101]", "gpu099", "gpu101", 3),
        ("gpu[1-10]", "gpu1", "gpu10", 10),
        ("node[1-8]!node3", "node1", "node8", 7),
        ("dgx-b,dgx-a", "dgx-b", "dgx-a", 2),
        ("gpu[001-003].dc1", "gpu001.dc1", "gpu003.dc1", 3),
        ("fe80::1", "fe80::1", "fe80::1", 1),
    ],
)
def test_known_ranges(entry: str, first: str, last: str, count: int) -> None:
    names = expand_hosts(entry)
    assert (names[0], names[-1], len(names)) == (first, last, count)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("gpu[3-1]", 'not a valid host range: invalid values in range: "3-1"'),
        ("gpu[001-1000]", "padding length mismatch"),
        ("gpu[1-", "missing bracket"),
        ("gpu[]", "empty range"),
        ("", "empty host entry"),
        ("a,,b", "empty item"),
        ("gpu1,gpu1", "gpu1 is listed twice"),
        ("@train", "ClusterShell node group"),
        ("root@gpu1", "set User for this host in ~/.ssh/config"),
        ("gpu1:2222", "set Port for this host in ~/.ssh/config"),
        ("gpu 1", "white space"),
        ("-oProxyCommand=x", "starts with '-'"),
        ("gpu[1-1000000000000]", "more than 50000 hosts"),
        ("a[0-999]b[0-999]", "more than 50000 hosts"),
    ],
)
def test_bad_entries_say_why(entry: str, message: str) -> None:
    with pytest.raises(HostRangeError, match=message.replace("[", r"\[")):
        expand_hosts(entry)


def test_duplicates_may_be_allowed_for_targets() -> None:
    assert expand_hosts("gpu[1-3],gpu2", allow_duplicates=True) == ["gpu1", "gpu2", "gpu3"]


def test_split_entry_ignores_commas_inside_brackets() -> None:
    assert split_entry("a[1,2],b,c[3-4,6]") == ["a[1,2]", "b", "c[3-4,6]"]
