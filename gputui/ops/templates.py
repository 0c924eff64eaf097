"""Argv templates: `["scontrol", "update", "NodeName={node}", "Reason=gputui: {reason}"]`.

A template is a list of arguments, never a shell string. Each placeholder is replaced inside
its own argument, so whatever a value holds (quotes, `;`, `$(...)`, newlines, 10 kB of text)
it stays one argument: the number of arguments of a rendered command is always the number in
its template. Commands run on another machine are joined with shlex quoting, which the remote
POSIX shell splits back into exactly this argv.

Placeholders are `{name}` with a name from PLACEHOLDERS; `{{` and `}}` are literal braces.
Parsing is done here rather than with str.format, which would also accept `{node.attr}`,
`{node[0]}` and format specs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: Every placeholder a template may use, with what fills it.
PLACEHOLDERS: dict[str, str] = {
    "node": "the node the action is for",
    "reason": "the operator's reason (e.g. XID 79)",
    "job": "a job id: each job seen on the node's GPUs in turn (one run per job), --job ID, or "
    "each output line of the previous step (for_each_line)",
    "jobs": "the ids of the jobs seen on the node's GPUs, comma-joined in one argument (123,456)",
    "gpu": "a GPU index on the node",
    "uuid": "a GPU uuid",
    "spare": "the spare node brought into service",
    "operator": "the local user running gputui",
}

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A template that cannot be parsed, or a value that cannot fill it safely."""


@dataclass(frozen=True)
class Slot:
    """A placeholder inside an argument."""

    name: str


@dataclass(frozen=True)
class ArgTemplate:
    """One argument: literal text and placeholders, rendered into exactly one string."""

    text: str  # as written, for messages and previews
    parts: tuple[str | Slot, ...]

    @classmethod
    def parse(cls, text: str) -> ArgTemplate:
        parts: list[str | Slot] = []
        literal = ""
        pos = 0
        for m in _TOKEN.finditer(text):
            literal += text[pos : m.start()]
            pos = m.end()
            token = m.group(0)
            if token in ("{{", "}}"):
                literal += token[0]
            elif token in ("{", "}"):
                raise TemplateError(
                    f"unmatched {token!r} in {text!r} (write {token * 2} for a literal brace)"
                )
            else:
                name = m.group(1)
                if name not in PLACEHOLDERS:
                    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                    raise TemplateError(
                        f"unknown placeholder {{{name}}} in {text!r}; known: {known}"
                    )
                if literal:
                    parts.append(literal)
                    literal = ""
                parts.append(Slot(name))
        literal += text[pos:]
        if literal:
            parts.append(literal)
        return cls(text=text, parts=tuple(parts))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Slot))

    @property
    def whole_slot(self) -> str | None:
        """The placeholder's name when the argument is nothing but one placeholder."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Slot):
            return self.parts[0].name
        return None

    def render(self, values: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else values[part.name])
        return "".join(out)


def check_value(name: str, value: str, *, whole_argument: bool) -> None:
    """Refuse values that could not be passed as one argument, or would read as an option.

    A NUL cannot be part of any argument (execve would cut the string there). A value that
    makes up a whole argument and starts with "-" would be read by most programs as an option
    (`kubectl cordon --all` cordons every node), so it is refused there; inside a larger
    argument such as `Reason=gputui: {reason}` it is harmless.
    """
    if "\0" in value:
        raise TemplateError(f"the {name} contains a NUL character, which no argument can hold")
    if whole_argument and value.startswith("-"):
        raise TemplateError(
            f"the {name} {value[:40]!r} starts with '-' and fills a whole argument, where the "
            "command would read it as an option"
        )


@dataclass(frozen=True)
class CommandTemplate:
    """An argv template: the program and its arguments."""

    args: tuple[ArgTemplate, ...]

    @classmethod
    def parse(cls, argv: list[str]) -> CommandTemplate:
        if not argv:
            raise TemplateError("argv is empty: give the program and its arguments")
        args = tuple(ArgTemplate.parse(a) for a in argv)
        if args[0].names:
            # The program itself is never chosen by a value: a node name must not pick what runs.
            raise TemplateError(f"the program {argv[0]!r} cannot contain a placeholder")
        return cls(args=args)

    @property
    def names(self) -> frozenset[str]:
        return frozenset().union(*(a.names for a in self.args))

    def render(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """The argv for `values`; TemplateError when a value is missing or unsafe."""
        for arg in self.args:
            whole = arg.whole_slot
            for name in arg.names:
                if name not in values:
                    raise TemplateError(f"no value for {{{name}}}")
                check_value(name, values[name], whole_argument=whole == name)
        return tuple(arg.render(values) for arg in self.args)

    @property
    def text(self) -> tuple[str, ...]:
        return tuple(a.text for a in self.args)
