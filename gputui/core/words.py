"""Sentences said right: counts whose noun agrees, details that add to what is said.

Every sentence that counts something goes through `counted`, so a fleet of one host never
reads "1 hosts" and no text hedges with "host(s)"; a detail from a host (NVML's error, an
agent's event text) joins a sentence through `adding`, so "GPU3 is lost" is not followed by
NVML's "GPU is lost".
"""

from __future__ import annotations

import re

__all__ = ["adding", "counted"]

_WORDS = re.compile(r"[a-z]+")
_SAME_WORD = {"requires": "needs", "required": "needs"}


def counted(n: int, noun: str, plural: str = "") -> str:
    """`n` and `noun`, the noun in the plural (`plural`, else `noun` + "s") unless `n` is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _words(text: str) -> set[str]:
    """The words of `text`, lower case, without numbers ("GPU3" and "GPU 3" are "gpu")."""
    return {_SAME_WORD.get(w, w) for w in _WORDS.findall(text.lower())}


def adding(said: str, detail: str | None) -> str:
    """`said`, then ": detail" when the detail says more than `said` already does."""
    if not detail or _words(detail) <= _words(said):
        return said
    return f"{said}: {detail}"
