"""Text from a host, shown as written: never as Rich markup, emoji shortcodes or Markdown.

A host's stderr, error text, GPU and process names, XID and kernel-log lines are data. Rich
reads a `str` handed to `Console.print` or to a table cell as markup (`[/usr/lib64/nvidia]`
raises MarkupError) with emoji shortcodes (`0000:ab:00.0` shows 🆎), and Markdown reads `|`,
backticks, `#` and `<tag>` as structure. Every renderer puts host text through one of these:

- `host_text()`: a rich Text, which Rich never parses, for tables and styled lines;
- `text_console()`: a Console that reads no markup and no shortcodes in any `str` it prints;
- `md()` and `md_code()`: host text inside a Markdown line or code span.

Each also applies `plain()`: the decoder already strips control characters, but a string that
reached a renderer another way (a test, a future source) must not reach the terminal with them.
"""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.style import Style
from rich.text import Text

from gputui.core.text import plain

__all__ = ["host_text", "md", "md_code", "text_console"]


def host_text(text: str, style: str | Style = "") -> Text:
    """`text` as a rich Text: no markup, no emoji shortcodes, no control characters."""
    return Text(plain(text), style=style)


def text_console(width: int) -> tuple[Console, io.StringIO]:
    """A Console writing plain text into a buffer; it reads every `str` literally."""
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width,
        force_terminal=False,
        color_system=None,
        highlight=False,
        markup=False,
        emoji=False,
    )
    return console, buf


# What Markdown (CommonMark with GitHub's tables, strikethrough and math) reads as structure
# inside a line: a backslash escapes each. `#` and `>` only matter at a line's start, which host
# text never is, but escaping them costs nothing and holds if a line is ever rebuilt.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~&$])")
_BACKTICKS = re.compile(r"`+")


def md(text: str) -> str:
    """`text` for a Markdown line or table cell: read as written, one line, no structure."""
    return _MD_SPECIAL.sub(r"\\\1", plain(text))


def md_code(text: str) -> str:
    """`text` as one Markdown code span, however many backticks it holds."""
    text = plain(text)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    # A span's content loses one space at each end when it has one at both: pad so a leading
    # or trailing backtick stays apart from the fence, and spaces at the ends survive.
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
