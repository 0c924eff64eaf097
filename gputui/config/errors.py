"""ConfigError and the translation of tomllib and msgspec failures into one-paragraph messages.

The CLI prints str(ConfigError) and exits 2, so everything a user needs to fix the file is in
that one string: the file, the key path as written in TOML (`groups.train.hosts[2]`), what was
expected and what was found. msgspec reports paths as `$.interval` and expectations as
"Expected `float` > 0.0"; both are rewritten here in the file's own terms.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import msgspec


class ConfigError(Exception):
    """A hosts file (or a host target) that gputui cannot use, explained in one paragraph.

    `source` is the file, `key` the TOML key path (None when the problem is not one key),
    `detail` the rest. `line`/`column` are set for TOML syntax errors.
    """

    def __init__(
        self,
        detail: str,
        *,
        source: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.detail = detail
        self.source = source
        self.key = key
        self.line = line
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [p for p in (self.source, self.key) if p]
        return ": ".join([*parts, self.detail])

    def __str__(self) -> str:
        return self._render()


# --------------------------------------------------------------------------------------------
# Key paths and values, written the way the user wrote them in TOML.
# --------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(name: str) -> str:
    """A table or key name as it must be written in TOML: bare when it can be, else quoted."""
    return name if _BARE_KEY.match(name) else json.dumps(name)


def join_key(prefix: str, name: str) -> str:
    """`prefix.name`, quoting `name` if TOML needs it."""
    return f"{prefix}.{toml_key(name)}" if prefix else toml_key(name)


def show_value(value: Any) -> str:
    """A value as the user typed it, short enough for a one-paragraph message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        text = "[" + ", ".join(show_value(v) for v in value) + "]"
        return f"an array {text}" if len(text) <= 60 else "an array"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return f"the date/time {value.isoformat()}"
    return repr(value)


# --------------------------------------------------------------------------------------------
# tomllib
# --------------------------------------------------------------------------------------------

_TOML_POSITION = re.compile(
    r"^(?P<msg>.*?)\s*\((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)


def from_toml_error(exc: ValueError, text: str, source: str) -> ConfigError:
    """A ConfigError for tomllib's TOMLDecodeError, with the line and the text of that line.

    Python 3.11's TOMLDecodeError carries its position only inside the message, hence the regex.
    """
    message = str(exc)
    match = _TOML_POSITION.match(message)
    line: int | None = None
    column: int | None = None
    if match:
        message = match["msg"]
        if match["line"]:
            line, column = int(match["line"]), int(match["col"])
    lines = text.splitlines()
    if line is None:
        # "at end of document": an unterminated string or array; the last line is the best hint.
        line = max(len(lines), 1)
        where = f"line {line} (end of file)"
    else:
        where = f"line {line}, column {column}"
    detail = f"{where}: not valid TOML: {_lower_first(message)}"
    if 0 < line <= len(lines) and lines[line - 1].strip():
        snippet = lines[line - 1].strip()
        if len(snippet) > 80:
            snippet = snippet[:77] + "..."
        detail += f"; the line reads: {snippet}"
    return ConfigError(detail, source=source, line=line, column=column)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# --------------------------------------------------------------------------------------------
# msgspec
# --------------------------------------------------------------------------------------------

_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_PATH_TOKEN = re.compile(r"\.(?P<field>[^.\[]+)|\[(?P<index>\d+|\.\.\.)\]")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<types>[^`]*)`(?P<rest>.*?)(?:, got `(?P<got>[^`]*)`)?$")

# msgspec's type names in the words of a TOML file.
_TYPE_WORDS = {
    "float": "a number",
    "int": "a whole number",
    "str": "a string",
    "bool": "true or false",
    "array": "an array",
    "object": "a table",
    "null": None,
}

_Token = str | int | None  # field name, list index, or None for a dict key msgspec elides


def _parse_path(path: str | None) -> list[_Token]:
    if not path:
        return []
    tokens: list[_Token] = []
    for m in _PATH_TOKEN.finditer(path[1:]):
        if m["field"] is not None:
            tokens.append(m["field"])
        elif m["index"] == "...":
            tokens.append(None)
        else:
            tokens.append(int(m["index"]))
    return tokens


def _render_path(prefix: str, tokens: Sequence[_Token]) -> str:
    out = prefix
    for tok in tokens:
        if isinstance(tok, int):
            out += f"[{tok}]"
        elif tok is None:
            out = join_key(out, "?")
        else:
            out = join_key(out, tok)
    return out


def _lookup(raw: Any, tokens: Sequence[_Token]) -> tuple[bool, Any]:
    """The raw TOML value at `tokens`, and whether it was found."""
    node = raw
    for tok in tokens:
        in_list = isinstance(tok, int) and isinstance(node, list) and tok < len(node)
        in_table = isinstance(tok, str) and isinstance(node, dict) and tok in node
        if not (in_list or in_table):
            return False, None
        node = node[tok]
    return True, node


def _unwrap(t: msgspec.inspect.Type) -> tuple[msgspec.inspect.Type, str | None]:
    """Strip Optional and Annotated metadata, keeping the field's description if it has one."""
    description: str | None = None
    while True:
        if isinstance(t, msgspec.inspect.Metadata):
            desc = (t.extra_json_schema or {}).get("description")
            if isinstance(desc, str):
                description = desc
            t = t.type
        elif isinstance(t, msgspec.inspect.UnionType):
            rest = [u for u in t.types if not isinstance(u, msgspec.inspect.NoneType)]
            if len(rest) != 1:
                return t, description
            t = rest[0]
        else:
            return t, description


def _walk(
    schema: type[Any], tokens: Sequence[_Token]
) -> tuple[msgspec.inspect.Type | None, str | None]:
    """The type found at `tokens` inside `schema`, and the nearest field description on the way."""
    node: msgspec.inspect.Type | None = msgspec.inspect.type_info(schema)
    description: str | None = None
    for tok in tokens:
        if node is None:
            break
        node, desc = _unwrap(node)
        description = desc or description
        if isinstance(tok, str) and isinstance(node, msgspec.inspect.StructType):
            field = next((f for f in node.fields if f.encode_name == tok), None)
            node = field.type if field is not None else None
            description = None  # a new field: only its own description applies
        elif isinstance(node, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
            node = node.item_type
        elif isinstance(node, msgspec.inspect.DictType):
            node = node.value_type
        else:
            node = None
    if node is not None:
        node, desc = _unwrap(node)
        description = desc or description
    return node, description


def _bounds(t: msgspec.inspect.IntType | msgspec.inspect.FloatType) -> str:
    parts = [
        f"{op} {limit:g}"
        for op, limit in ((">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le))
        if limit is not None
    ]
    return (" " + " and ".join(parts)) if parts else ""


def _describe(t: msgspec.inspect.Type) -> str | None:
    """What a field of type `t` accepts, in words, for fields without a description.

    msgspec's own message names the constraint it checked or the type, never both; the type
    information has both, so "job_gpus" reads "a whole number >= 1" whatever was wrong.
    """
    if isinstance(t, msgspec.inspect.IntType):
        return "a whole number" + _bounds(t)
    if isinstance(t, msgspec.inspect.FloatType):
        return "a number" + _bounds(t)
    if isinstance(t, msgspec.inspect.StrType):
        return "a string"
    if isinstance(t, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(t, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(show_value(v) for v in t.values)
    if isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
        return "an array"
    if isinstance(t, (msgspec.inspect.DictType, msgspec.inspect.StructType)):
        return "a table"
    return None


def _msgspec_expectation(types: str, rest: str) -> str:
    """ "Expected `float | null` >= 0.0" -> "a number >= 0.0" for fields without a description."""
    words = [_TYPE_WORDS.get(t.strip(), f"`{t.strip()}`") for t in types.split("|")]
    phrase = " or ".join(w for w in words if w) or "a value"
    rest = rest.strip()
    return f"{phrase} {rest}" if rest else phrase


def from_validation_error(
    exc: msgspec.ValidationError, raw: Any, schema: type[Any], source: str, prefix: str
) -> ConfigError:
    """A ConfigError for msgspec's ValidationError raised converting `raw` into `schema`.

    `prefix` is the key path of `raw` in the file ("" for the whole file, "groups.train" for a
    group), so the message names the key as the user wrote it.
    """
    match = _MSGSPEC_AT.match(str(exc))
    assert match is not None  # the pattern accepts any string
    message, tokens = match["msg"], _parse_path(match["path"])

    unknown = _UNKNOWN_FIELD.match(message)
    if unknown:
        name = unknown["name"]
        node, _ = _walk(schema, tokens)
        valid = (
            [f.encode_name for f in node.fields]
            if isinstance(node, msgspec.inspect.StructType)
            else []
        )
        detail = f"unknown key {json.dumps(name)}{did_you_mean(name, valid)}"
        if valid:
            detail += "; valid keys here: " + ", ".join(valid)
        return ConfigError(detail, source=source, key=_render_path(prefix, [*tokens, name]))

    missing = _MISSING_FIELD.match(message)
    if missing:
        key = _render_path(prefix, [*tokens, missing["name"]])
        return ConfigError("this key is required", source=source, key=key)

    node, description = _walk(schema, tokens)
    if description is None and node is not None:
        description = _describe(node)
    if description is None:
        expected = _EXPECTED.match(message)
        if expected:
            description = _msgspec_expectation(expected["types"], expected["rest"])
    found, value = _lookup(raw, tokens)
    detail = f"expected {description}" if description else _lower_first(message)
    if found:
        detail += f", got {show_value(value)}"
    return ConfigError(detail, source=source, key=_render_path(prefix, tokens) or None)


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """' (did you mean "x"?)' when a choice is close to `name`, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""
