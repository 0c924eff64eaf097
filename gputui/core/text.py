"""Text that came from a host, made safe to show.

A host is not trusted: its stderr, its agent's error lines, its host name, process names, XID
and kernel-log text can hold terminal escape sequences (an OSC that retitles the operator's
window, a CSI that clears the screen) or bidirectional overrides that make a line read other
than it is. Every such string passes `plain()` once, where it enters gputui (the decoder, the
sources' stderr and exception text); after that it is data, and every renderer shows it as plain
text, never as Rich markup or emoji shortcodes (see render/ and tui/).
"""

from __future__ import annotations

# C0 controls, DEL and C1 controls (0x80-0x9f: 0x9b is a one-byte CSI on some terminals).
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
# Unicode format characters that reorder text (bidi marks, embeddings, overrides, isolates).
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_WHITESPACE = {0x09: " ", 0x0A: " ", 0x0D: " "}  # a line break in a reason becomes a space

_TABLE: dict[int, str | None] = {c: None for c in (*_CONTROLS, *_BIDI)}
_TABLE.update(_WHITESPACE)
_UNSAFE = frozenset(chr(c) for c in _TABLE)


def is_plain(text: str) -> bool:
    """Whether `text` holds nothing `plain()` would change."""
    return _UNSAFE.isdisjoint(text)


def plain(text: str, limit: int | None = None) -> str:
    """`text` without control characters or bidi overrides, optionally cut to `limit` chars.

    Tabs and line breaks become spaces (a reason is one line); every other control character
    is dropped, so an escape sequence loses its ESC and shows as harmless printable residue.
    """
    if not _UNSAFE.isdisjoint(text):
        text = text.translate(_TABLE)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def plain_bytes(data: bytes, limit: int | None = None) -> str:
    """Bytes from a host (stderr, a bad line) as plain text: undecodable bytes replaced."""
    return plain(data.decode("utf-8", "replace"), limit)
