"""gputui uses Textual through its public API only, so a Textual release within the pinned major
version cannot break a screen by changing what it keeps private.

Checked in gputui's source: no import of a `textual._*` module or of a `_name` from a Textual
module; no `obj._name` where `_name` is private to a Textual class (an attribute Textual sets or
defines) and not a name gputui gives its own objects; no method or attribute of a gputui class
whose name is private to one of its Textual bases (an override or a clash); and no assignment
to an attribute of a Textual class or module (a patch).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import textual

import gputui

ROOT = Path(gputui.__file__).resolve().parent


def _private(name: str) -> bool:
    """`_name`, but not `__dunder__` nor enum's `_sunder_` names (public Python API)."""
    return name.startswith("_") and not name.startswith("__") and not name.endswith("_")


def _is_textual(name: str) -> bool:
    return name == "textual" or name.startswith("textual.")


@functools.cache
def _tree(path: str) -> ast.Module:
    return ast.parse(Path(path).read_text(encoding="utf-8"))


@functools.cache
def _classes_in(path: str) -> dict[str, frozenset[str]]:
    """Per class of a source file: the private names its body defines and its methods give
    the instances (`self._x`)."""
    classes: dict[str, frozenset[str]] = {}
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.ClassDef):
            continue
        names: set[str] = set()
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(item.name)
            elif isinstance(item, ast.Assign | ast.AnnAssign):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "self"
            ):
                names.add(sub.attr)
        classes[node.name] = frozenset(filter(_private, names))
    return classes


def _source_names(cls: type) -> frozenset[str]:
    """Private names `cls`'s own source defines or gives its instances."""
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        return frozenset()
    if path is None:
        return frozenset()
    return _classes_in(path).get(cls.__name__, frozenset())


@functools.cache
def _class_private(cls: type) -> frozenset[str]:
    """Private names of one Textual class: defined on it or set on its instances."""
    names = {name for name in vars(cls) if _private(name)}
    names |= {name for name in getattr(cls, "__slots__", ()) if _private(name)}
    return frozenset(names | _source_names(cls))


def textual_private(cls: type) -> set[str]:
    """Private names of the Textual classes in `cls`'s MRO."""
    names: set[str] = set()
    for base in cls.__mro__:
        if _is_textual(base.__module__):
            names |= _class_private(base)
    return names


def gputui_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        yield ".".join(parts), path


def _tui_modules() -> list[str]:
    return [name for name, _ in gputui_modules() if name.startswith("gputui.tui")]


@functools.cache
def all_textual_private() -> frozenset[str]:
    """Private names of every Textual class gputui's TUI can reach."""
    for name in _tui_modules():
        importlib.import_module(name)
    names: set[str] = set()
    for module_name, module in list(sys.modules.items()):
        if not _is_textual(module_name) or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and _is_textual(value.__module__):
                names |= textual_private(value)
    return frozenset(names)


@functools.cache
def gputui_own_private() -> frozenset[str]:
    """Private names gputui gives its own objects, functions and modules."""
    names: set[str] = set()
    for _, path in gputui_modules():
        for node in ast.walk(_tree(str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return frozenset(filter(_private, names))


def _textual_names(tree: ast.Module) -> set[str]:
    """Local names bound to Textual modules or to what they define."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_textual(alias.name):
                    names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and _is_textual(node.module):
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def import_problems(module: str, tree: ast.Module) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_textual(alias.name) and any(map(_private, alias.name.split("."))):
                    problems.append(f"{module}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and _is_textual(node.module):
            if any(map(_private, node.module.split("."))):
                problems.append(f"{module}:{node.lineno} imports from {node.module}")
            for alias in node.names:
                if _private(alias.name):
                    problems.append(f"{module}:{node.lineno} imports {node.module}.{alias.name}")
    return problems


def access_problems(module: str, tree: ast.Module) -> list[str]:
    """`obj._name` for a name private to Textual and foreign to gputui; patches of Textual."""
    theirs = all_textual_private() - gputui_own_private()
    textual_names = _textual_names(tree)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in theirs:
            problems.append(f"{module}:{node.lineno} uses Textual's private {node.attr}")
        if (
            isinstance(node.ctx, ast.Store | ast.Del)
            and isinstance(node.value, ast.Name)
            and node.value.id in textual_names
        ):
            problems.append(f"{module}:{node.lineno} patches {node.value.id}.{node.attr}")
    return problems


def override_problems() -> list[str]:
    """gputui classes on Textual bases naming anything their bases keep private."""
    problems = []
    for name, path in gputui_modules():
        if not name.startswith("gputui.tui"):
            continue
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != name:
                continue
            theirs = textual_private(cls)
            if not theirs:
                continue
            ours = _classes_in(str(path)).get(cls.__name__, frozenset())
            for clash in sorted(ours & theirs):
                problems.append(f"{name}.{cls.__name__} overrides Textual's private {clash}")
    return problems


def test_no_module_imports_textual_internals() -> None:
    problems = [
        problem
        for name, path in gputui_modules()
        for problem in import_problems(name, _tree(str(path)))
    ]
    assert problems == []


def test_no_module_touches_textual_private_attributes() -> None:
    problems = [
        problem
        for name, path in gputui_modules()
        for problem in access_problems(name, _tree(str(path)))
    ]
    assert problems == []


# The one private name gputui still overrides, because Textual offers no public way to say that
# an opaque screen hides the screens under it (docs/architecture.md, "Textual"). Any other is
# a failure; this one must be checked by hand on each Textual upgrade.
KNOWN_OVERRIDES = {"gputui.tui.app.GpuTuiApp overrides Textual's private _background_screens"}


def test_no_class_overrides_textual_private_names() -> None:
    assert set(override_problems()) <= KNOWN_OVERRIDES


def test_the_checks_catch_what_they_are_for() -> None:
    """Each check flags a sample of what it forbids (it could otherwise pass vacuously)."""
    sample = ast.parse(
        "from textual._types import SegmentLines\n"
        "import textual._compositor\n"
        "from textual.strip import Strip\n"
        "screen._compositor.render_update()\n"
        "Strip.divide = None\n"
    )
    assert len(import_problems("sample", sample)) == 2
    assert {p.split(" ", 1)[1] for p in access_problems("sample", sample)} == {
        "uses Textual's private _compositor",
        "patches Strip.divide",
    }
    from textual.widgets import DataTable

    assert "_render_cell" in textual_private(DataTable)
    assert "_row_locations" in textual_private(DataTable)  # set in __init__
    assert textual.__version__.split(".")[0] == "8"  # the major version pinned and tested
