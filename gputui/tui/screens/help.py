"""`?`: every key of every screen, the filter syntax and what the colours mean.

Built from the screens' own BINDINGS, so the help cannot drift from what the keys do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "escape": "esc",
    "enter": "enter",
    "backspace": "backspace",
}

FILTER_HELP = """\
Fleet filter (/): space-separated terms, all must match; -term excludes.
  state:warn  is:crit  state:unreachable,stale   the state chip, by prefix
  rack=r12  label:group=train  gpu=H100*          a host label (* and ? wildcards)
  gpu01  xid  thermal                             name, state, reason or label value
Event filter (/ on the Events tab): level:warn (or worse), host:gpu01*, kind:xid, or text.
Enter keeps the filter, esc clears it."""

JOBS_HELP = """\
Jobs tab (5): enter shows the job's GPUs across hosts side by side (they follow the cursor),
esc closes them, enter on a GPU opens its host. s sorts by worst, GPUs, run time, risk, user
or job; S reverses; a click on a header sorts by it. x, u and a act on the host where the
highlighted job is worst, or on the host of the GPU under the cursor. RUN with > counts from
when gputui first saw the job; P24H and CKPT are the job's own odds of a day without a failure
and its checkpoint interval, at the fleet's rate."""

PREVENTION_HELP = """\
Prevention tab (6): the GPUs and nodes to service before they fail, from the journal's daily
rollups (read at most once a minute while shown; r reads again), ranked by the chance of a
failure within 30 days that servicing avoids. The highlighted item's findings are below: the
evidence, a chart of its days and the advice (replace or upgrade hardware, improve cooling, fix
power). enter opens its host, whose GPU panels chart their days too; x, u and a act on it."""

GPUS_HELP = """\
GPU view (g, and a small fleet opens on it): a panel per GPU with meters for utilisation,
memory, temperature against the GPU's own slowdown limit and power against its limit, clocks
and clock-event reasons, and charts of the four over the monitor's history (the caption gives
the span); the processes below, one row per process and GPU. s sorts them by GPU memory, SM,
CPU, host memory, run time, GPU, pid or user; S reverses; a click on a header sorts by it.
d opens the host screen; x, u, a and t act on the host of the process under the cursor."""

COLOURS_HELP = """\
Colours: green ok, amber warn, red critical, magenta failed (GPU lost, XID 79/95/140,
remap failure), grey unknown or unreachable, purple stale (connected, no sample), blue marked
failed by an operator. Stale and unreachable rows keep their last values, dimmed, with their age.
In the grid each character is two GPUs (upper half, lower half): 0-3 on top, 4-7 below."""


def _key(binding: Binding) -> str:
    return ", ".join(KEY_NAMES.get(k, k) for k in binding.key.split(","))


def _bindings(items: Iterable[BindingType]) -> list[Binding]:
    out = []
    for item in items:
        if isinstance(item, Binding):
            out.append(item)
        elif isinstance(item, tuple) and len(item) >= 2:
            out.append(Binding(*item))
    return out


def help_body(sections: Sequence[tuple[str, Iterable[BindingType]]]) -> RenderableType:
    parts: list[RenderableType] = []
    for title, items in sections:
        table = Table(
            title=title,
            title_justify="left",
            title_style="bold",
            show_header=False,
            box=None,
            padding=(0, 2, 0, 1),
        )
        table.add_column("key", style="bold", no_wrap=True, min_width=12)
        table.add_column("does")
        for b in _bindings(items):
            if b.description:
                table.add_row(_key(b), b.description)
        parts += [table, Text()]
    parts += [Text(FILTER_HELP), Text(), Text(JOBS_HELP), Text()]
    parts += [Text(PREVENTION_HELP), Text(), Text(GPUS_HELP), Text(), Text(COLOURS_HELP)]
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: Sequence[tuple[str, Iterable[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(Text("gputui keys  (esc closes)", style="bold"))
            yield Static(help_body(self.sections), id="help-body")

    def action_close(self) -> None:
        self.dismiss()
