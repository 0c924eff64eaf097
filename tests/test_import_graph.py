"""gputui's modules import one another without a cycle.

The contracts in pyproject.toml order the packages; this orders the modules inside them. A
cycle between two modules means neither can be read, tested or moved without the other, and
one hidden by an import inside a function or under TYPE_CHECKING is a cycle all the same:
grimp's graph counts those imports too.
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of two or more modules that reach one another (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group: list[str] = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def _imports_within(graph: grimp.ImportGraph, group: list[str]) -> list[str]:
    """The import lines that hold `group` together, for the failure message."""
    lines = []
    for importer in group:
        for imported in group:
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"{importer}:{detail['line_number']}: {detail['line_contents']}")
    return lines


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("gputui", cache_dir=None)
    cycles = _cycles(graph)
    assert not cycles, "\n".join(
        " <-> ".join(group) + "\n  " + "\n  ".join(_imports_within(graph, group))
        for group in cycles
    )
