"""No import cycles inside the package (the old one: workload -> data.synthetic -> workloads.common
-> evaluation -> workload).

Counts every ``import``/``from ... import`` of a package module, also those inside functions
(a lazy import only hides a cycle until the function runs). Importing a submodule always
imports its parent packages first; those edges are not counted.

    python -m pytest tests/test_imports.py
"""

from __future__ import annotations

import ast
import os

from conftest import REPO

PACKAGE = "algoperf_torch"


def modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found[module.removesuffix(".__init__")] = path
    return found


def imports(module: str, path: str, known: dict[str, str]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            out |= subs or {node.module}
    parents = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}
    return {m for m in out if m in known and m != module and m not in parents}


def test_no_import_cycles():
    known = modules()
    graph = {m: imports(m, p, known) for m, p in known.items()}
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    for m in sorted(graph):
        if m not in done:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
