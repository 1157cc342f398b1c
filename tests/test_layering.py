"""The shape of the code holds: layers import one way, no two modules need each other, no module passes
600 lines, and an engine's name stays in its own module and the registry.

Imports are read from the source (ast), imports inside functions included; those under
``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("callbacks", "integrations", "trainer")
#: a package may import only the packages listed for it (callbacks <- integrations <- trainer)
ALLOWED = {"callbacks": {"callbacks"}, "integrations": {"callbacks", "integrations"},
           "trainer": {"callbacks", "integrations", "trainer"}}
MAX_LINES = 600


def modules(root: str = ROOT) -> dict[str, str]:
    """``{dotted module name: path}`` of every module of the three packages (a package as its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for dirpath, _dirs, files in os.walk(os.path.join(root, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


def imported_modules(name: str, path: str, known: set[str]) -> set[str]:
    """The project modules ``name`` imports at run time (``from pkg import sub`` counts as ``pkg.sub``)."""
    is_package = path.endswith("__init__.py")
    found: set[str] = set()

    def add(target: str, names: list[str]) -> None:
        if target.split(".")[0] not in PACKAGES:
            return
        submodules = {f"{target}.{n}" for n in names if f"{target}.{n}" in known}
        found.update(submodules)
        if len(submodules) < len(names) or not names:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            found.add(target)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, [])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            add(target, [alias.name for alias in node.names])
        visit(node)

    with open(path, encoding="utf-8") as f:
        visit(ast.parse(f.read()))
    found.discard(name)
    return found


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
    paths = modules(root)
    return {name: imported_modules(name, path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a circle (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return groups


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                  if target.split(".")[0] not in ALLOWED[module.split(".")[0]])


def test_layers_import_one_way_and_no_modules_import_each_other():
    graph = import_graph()
    assert len(graph) > 40 and "trainer.trainer" in graph["trainer"]  # the walk sees the packages
    assert layer_violations(graph) == []
    assert cycles(graph) == []


def test_the_checks_catch_a_layer_violation_and_a_circle(tmp_path):
    """The same walk over a small tree with the faults the rules forbid: it must report each of them."""
    files = {
        "callbacks/__init__.py": "from .base import Callback\n",
        "callbacks/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from trainer import T\n"
                             "class Callback:\n    def f(self):\n        from integrations.a import x\n",
        "integrations/__init__.py": "",
        "integrations/a.py": "from .b import y\nx = 1\n",
        "integrations/b.py": "def g():\n    from . import a\ny = 2\n",
        "trainer/__init__.py": "from callbacks import Callback\nfrom .core import T\n",
        "trainer/core.py": "from integrations.a import x\nT = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(str(tmp_path))
    assert layer_violations(graph) == ["callbacks.base imports integrations.a"]  # the TYPE_CHECKING one is fine
    assert cycles(graph) == [["integrations.a", "integrations.b"]]  # an import inside a function counts


def test_no_module_passes_600_lines():
    long = {}
    for path in modules().values():
        with open(path, encoding="utf-8") as f:
            count = sum(1 for _ in f)
        if count > MAX_LINES:
            long[os.path.relpath(path, ROOT)] = count
    assert long == {}


def test_an_engine_is_named_in_its_module_and_the_registry_only():
    """Adding an engine = one module + one registry line (+ its TrainingArguments field): the code outside
    names no engine. Docstrings and messages may; an identifier or a string compared with may not."""
    from integrations.parallel import ENGINES

    own = {"deepspeed": {"integrations/deepspeed.py"}, "sharded_ddp": {"integrations/fairscale.py"},
           "fsdp": {"integrations/fsdp.py"}}
    assert set(ENGINES) == set(own)
    shared = {"integrations/parallel.py", "trainer/arguments.py"}  # the registry; the fields' declarations
    for engine, allowed in own.items():
        pattern = re.compile(rf"\b(args|self|strategy|rt|runtime)\.{engine}\b|[\"']{engine}[\"']\s*(==|!=|in\b)|"
                             rf"==\s*[\"']{engine}[\"']")
        found = set()
        for path in modules().values():
            rel = os.path.relpath(path, ROOT)
            with open(path, encoding="utf-8") as f:
                code = f.read()
            if pattern.search(code):
                found.add(rel)
        assert found <= allowed | shared, (engine, sorted(found - allowed - shared))
