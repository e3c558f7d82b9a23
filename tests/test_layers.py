"""The layout follows the data, checked from the source: the import graph of the product.

Every import statement of every module of orca_daemon/ and orca_client/ counts, including those
inside functions and under `if TYPE_CHECKING:`; `from pkg import module` is an import of that
module. The graph must have no cycle, and a module may import only its own layer or the layers
below it (LAYERS, bottom to top). Today's violations are listed exactly in ALLOWED_CYCLES and
ALLOWED_UPWARD; those lists may only shrink: an entry that is no longer needed fails too.

Test code follows a rule of its own: no module imports a test module. What several tests share
lives in tests/support/ (plain helpers) or tests/conftest.py (fixtures).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO

Edge = tuple[str, str]
"""(importer, imported), both module names."""

PRODUCT = ("orca_daemon", "orca_client")

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "protocol",
        (
            "orca_client",  # the package itself: its version
            "orca_client.wire",
            "orca_client.views",
            "orca_client.events",
            "orca_client.plan",
            "orca_client.paths",
            "orca_client.view_text",
            "orca_client.replay",
        ),
    ),
    (
        "base",
        (
            "orca_daemon",
            "orca_daemon.collector",
            "orca_daemon.config",
            "orca_daemon.limits",
            "orca_daemon.token",
            "orca_daemon.systemd",
        ),
    ),
    ("agents", ("orca_daemon.agents.*",)),
    ("sessions", ("orca_daemon.sessions.*",)),
    ("log", ("orca_daemon.log.*",)),
    ("state", ("orca_daemon.state.*",)),
    ("runs", ("orca_daemon.runs.*",)),
    ("orchestration", ("orca_daemon.orchestration.*",)),
    ("socket", ("orca_daemon.socket.*",)),
    (
        "root",
        (
            "orca_daemon.main",
            "orca_daemon.__main__",
            "orca_daemon.schemagen",
            "orca_daemon.synthesizer",
        ),
    ),
    ("client", ("orca_client.*",)),
]
"""Bottom to top. A plain name is one module; `pkg.*` is a package and everything in it. A module
named exactly belongs to that layer, any other to the one layer whose `pkg.*` holds it. So the
protocol is the pure modules orcad and the CLI share (no CLI or terminal code), and the client is
the rest of orca_client: the CLI, rendering, the client library, daemon control, usage errors,
the systemd unit it installs. The client sits on the protocol only: it never imports orca_daemon
(test_the_client_never_imports_the_daemon)."""

STANDALONE = {"orca_daemon.synthesizer"}
"""Programs orcad starts as agents, not parts of orcad: they import nothing from orca_daemon."""

ALLOWED_CYCLES: set[Edge] = set()
"""Today's imports that lie on an import cycle, exactly. May only shrink."""

ALLOWED_UPWARD: set[Edge] = set()
"""Today's imports of a higher layer, exactly. May only shrink."""


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Import:
    """What one import statement needs: a module of the product, and where it says so."""

    target: str
    line: int
    nested: bool = False
    """Inside a function or class body: runs when that code does, not at import time."""
    type_checking: bool = False
    """Under `if TYPE_CHECKING:`: only type checkers follow it."""


class ImportFinder(ast.NodeVisitor):
    """Every import statement of one module that names a module of the product."""

    def __init__(self, module: str, is_package: bool, modules: Iterable[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = set(modules)
        self.tops = {name.partition(".")[0] for name in self.modules}
        self.found: list[Import] = []
        self.unknown: list[str] = []
        self.depth = 0
        self.type_checking = 0

    def add(self, target: str, line: int) -> None:
        if target.partition(".")[0] not in self.tops:
            return
        if target not in self.modules:
            self.unknown.append(f"{self.module}:{line} imports {target}, which is no module")
            return
        self.found.append(Import(target, line, self.depth > 0, self.type_checking > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            source = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self.add(submodule if submodule in self.modules else source, node.lineno)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if not (
            (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        ):
            self.generic_visit(node)
            return
        self.type_checking += 1
        for child in node.body:
            self.visit(child)
        self.type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_nested(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_nested


def imports_in(
    source: str, module: str, modules: Iterable[str], is_package: bool = False
) -> tuple[list[Import], list[str]]:
    """The imports of `module` (its source given) that name one of `modules` (every module of
    the packages checked), and those that name something else in these packages."""
    finder = ImportFinder(module, is_package, modules)
    finder.visit(ast.parse(source))
    return finder.found, finder.unknown


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass
class Graph:
    modules: dict[str, Path]
    """Every module of the product, with its file."""
    imports: dict[str, list[Import]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    """Imports that name no module of the product."""
    edges: dict[Edge, list[int]] = field(default_factory=dict)
    """Each module a module imports (itself left out), with the lines that say so."""

    def where(self, edge: Edge) -> str:
        lines = ", ".join(str(line) for line in sorted(set(self.edges[edge])))
        return f"{self.modules[edge[0]].relative_to(REPO)}:{lines}"


def build_graph() -> Graph:
    graph = Graph(
        {
            module_name(path, REPO): path
            for package in PRODUCT
            for path in sorted((REPO / package).rglob("*.py"))
        }
    )
    for module, path in graph.modules.items():
        is_package = path.name == "__init__.py"
        found, unknown = imports_in(path.read_text(), module, graph.modules, is_package)
        graph.imports[module] = found
        graph.unknown += unknown
        for imp in found:
            if imp.target != module:
                graph.edges.setdefault((module, imp.target), []).append(imp.line)
    return graph


GRAPH = build_graph()


def adjacency(edges: Iterable[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for importer, imported in edges:
        graph.setdefault(importer, set()).add(imported)
    return graph


def cycle_through(graph: dict[str, set[str]], edge: Edge) -> list[str] | None:
    """The shortest import cycle that takes `edge`, from its importer back to it, if any."""
    importer, imported = edge
    came_from: dict[str, str] = {}
    queue = deque([imported])
    while queue and importer not in came_from:
        module = queue.popleft()
        for target in sorted(graph.get(module, ())):
            if target not in came_from and target != imported:
                came_from[target] = module
                queue.append(target)
    if importer not in came_from:
        return None
    path = [importer]
    while path[-1] != imported:
        path.append(came_from[path[-1]])
    return [importer, *reversed(path)]


def cyclic_edges(graph: Graph) -> dict[Edge, list[str]]:
    """Every import that lies on a cycle, with the shortest such cycle."""
    nodes = adjacency(graph.edges)
    found = {edge: cycle_through(nodes, edge) for edge in graph.edges}
    return {edge: cycle for edge, cycle in found.items() if cycle is not None}


def layers_of(module: str) -> list[str]:
    exact = [name for name, members in LAYERS if module in members]
    if exact:
        return exact
    return [
        name
        for name, members in LAYERS
        for member in members
        if member.endswith(".*") and (module == member[:-2] or module.startswith(member[:-1]))
    ]


RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def upward_edges(graph: Graph) -> dict[Edge, str]:
    """Every import of a higher layer, with what it crosses."""
    found: dict[Edge, str] = {}
    for importer, imported in graph.edges:
        below, above = layers_of(importer), layers_of(imported)
        if len(below) == 1 and len(above) == 1 and RANK[above[0]] > RANK[below[0]]:
            found[importer, imported] = f"{below[0]} imports {above[0]}"
    return found


# --------------------------------------------------------------------------- the rules


def test_every_product_module_belongs_to_exactly_one_layer() -> None:
    misplaced = [
        f"{path.relative_to(REPO)} ({module}) is in {layers_of(module) or 'no layer'}"
        for module, path in GRAPH.modules.items()
        if len(layers_of(module)) != 1
    ]
    assert not misplaced, (
        "add each module to exactly one layer of LAYERS in tests/test_layers.py (the layer of "
        "what it does; it may import only that layer and those below): " + "; ".join(misplaced)
    )


def test_every_product_import_names_a_module() -> None:
    assert GRAPH.unknown == []


def test_the_product_has_no_import_cycle() -> None:
    new = {edge: cyc for edge, cyc in cyclic_edges(GRAPH).items() if edge not in ALLOWED_CYCLES}
    report = [f"{GRAPH.where(edge)}: {' -> '.join(cyc)}" for edge, cyc in sorted(new.items())]
    assert not report, (
        "import cycles (move what both sides need below both; ALLOWED_CYCLES may only shrink):\n"
        + "\n".join(report)
    )


def test_imports_only_go_down_the_layers() -> None:
    new = {edge: how for edge, how in upward_edges(GRAPH).items() if edge not in ALLOWED_UPWARD}
    report = [
        f"{GRAPH.where(edge)}: {edge[0]} imports {edge[1]} ({how})"
        for edge, how in sorted(new.items())
    ]
    assert not report, (
        "imports that go up a layer (LAYERS in tests/test_layers.py; ALLOWED_UPWARD may only "
        "shrink):\n" + "\n".join(report)
    )


def test_the_allow_lists_only_shrink() -> None:
    """A cycle or upward import that is gone leaves its list, so that it cannot come back."""
    no_longer_cyclic = sorted(ALLOWED_CYCLES - set(cyclic_edges(GRAPH)))
    no_longer_upward = sorted(ALLOWED_UPWARD - set(upward_edges(GRAPH)))
    assert (no_longer_cyclic, no_longer_upward) == ([], []), (
        "gone: remove them from ALLOWED_CYCLES and ALLOWED_UPWARD in tests/test_layers.py"
    )


def test_the_client_never_imports_the_daemon() -> None:
    """Editor plugins and scripts can depend on orca_client alone."""
    found = [
        f"{GRAPH.where(edge)} imports {edge[1]}"
        for edge in GRAPH.edges
        if edge[0].startswith("orca_client") and edge[1].startswith("orca_daemon")
    ]
    assert found == []


def test_standalone_programs_import_nothing_from_the_daemon() -> None:
    found = [
        f"{GRAPH.where(edge)} imports {edge[1]}"
        for edge in GRAPH.edges
        if edge[0] in STANDALONE and edge[1].startswith("orca_daemon")
    ]
    assert found == []


# --------------------------------------------------------------------------- guard the guard

EVERY_KIND = """
from __future__ import annotations
import json
import typing
from typing import TYPE_CHECKING
import pkg.top
from pkg import sub, CONSTANT
from pkg.sub import name
from . import sibling
from .sibling import thing
from .. import top
from ..sub import other

if TYPE_CHECKING:
    from pkg.typed import Hint
else:
    import pkg.runtime

if typing.TYPE_CHECKING:
    import pkg.also_typed

def later():
    from pkg.in_function import f
    class Inner:
        import pkg.in_class
    return f

async def also_later():
    try:
        import pkg.in_coroutine
    except ImportError:
        pass

import pkg.missing
"""


def test_the_parser_sees_every_kind_of_import() -> None:
    """Module level, relative, `from pkg import module`, in function and class bodies, and under
    TYPE_CHECKING (whose else branch runs); a name that is no module is reported."""
    modules = ["pkg", "pkg.top", "pkg.sub", "pkg.deep", "pkg.deep.sibling", "pkg.typed"]
    modules += ["pkg.also_typed", "pkg.runtime", "pkg.in_function", "pkg.in_class"]
    modules += ["pkg.in_coroutine"]
    found, unknown = imports_in(EVERY_KIND, "pkg.deep.here", modules)
    assert [(imp.line, imp.target, imp.nested, imp.type_checking) for imp in found] == [
        (6, "pkg.top", False, False),
        (7, "pkg.sub", False, False),  # from pkg import sub, CONSTANT: a module, and a name
        (7, "pkg", False, False),
        (8, "pkg.sub", False, False),
        (9, "pkg.deep.sibling", False, False),  # from . import sibling
        (10, "pkg.deep.sibling", False, False),
        (11, "pkg.top", False, False),  # from .. import top
        (12, "pkg.sub", False, False),
        (15, "pkg.typed", False, True),
        (17, "pkg.runtime", False, False),
        (20, "pkg.also_typed", False, True),
        (23, "pkg.in_function", True, False),
        (25, "pkg.in_class", True, False),
        (30, "pkg.in_coroutine", True, False),
    ]
    assert unknown == ["pkg.deep.here:34 imports pkg.missing, which is no module"]


def test_the_graph_of_the_product_holds_nested_and_type_checking_imports() -> None:
    """The checks read real imports of both kinds, not only module-level ones."""
    every = [imp for imports in GRAPH.imports.values() for imp in imports]
    assert any(imp.nested for imp in every)
    assert any(imp.type_checking for imp in every)
    assert ("orca_daemon", "orca_client") in GRAPH.edges  # from orca_client import __version__


def test_a_cycle_is_reported_with_its_path() -> None:
    graph = adjacency([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "d")])
    assert cycle_through(graph, ("b", "c")) == ["b", "c", "a", "b"]
    assert cycle_through(graph, ("c", "d")) is None


# --------------------------------------------------------------------------- test code

TESTS = REPO / "tests"


def test_no_module_imports_a_test_module() -> None:
    """Helpers shared by tests live in tests/support/, fixtures in tests/conftest.py: a test
    module is never imported (by another test, a support module, conftest.py or bench/)."""
    test_modules = {path.stem for path in TESTS.glob("test_*.py")}
    importers = sorted(TESTS.glob("test_*.py")) + sorted(TESTS.glob("support/**/*.py"))
    importers += [TESTS / "conftest.py", *sorted((REPO / "bench").rglob("*.py"))]
    found = []
    for path in importers:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            if any(test_modules & set(name.split(".")) for name in names):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == [], "move what these import from a test module to tests/support/:\n" + (
        "\n".join(found)
    )
