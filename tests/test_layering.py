"""Layering rules the code must keep, checked on the source (ast), not by convention:

- SQL lives in storage/: no module in bot/services/ builds a query (sqlalchemy/sqlmodel ``select``,
  ``insert``, ``update``, ``delete``, ``text``, ``func``) or holds raw SQL; services call the
  repositories (storage/repositories.py) and named queries (storage/queries/).
- No import cycle among the modules of bot/ and storage/ (imports under ``if TYPE_CHECKING:`` and
  inside functions count too: a cycle hidden there is still a cycle in the design).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "bot" / "services"

SQL_NAMES = frozenset({"select", "insert", "update", "delete", "text", "func"})
SQL_PACKAGES = ("sqlalchemy", "sqlmodel")
RAW_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE)\b")


# -- SQL in services ------------------------------------------------------------------------------


def _is_sql_package(module: str) -> bool:
    return module.split(".")[0] in SQL_PACKAGES


def sql_constructions(source: str, filename: str = "<source>") -> list[str]:
    """Every place ``source`` builds SQL, as "file:line: what"."""
    tree = ast.parse(source, filename)
    modules: set[str] = set()  # local names bound to sqlalchemy/sqlmodel (modules): sa, sqlalchemy
    names: set[str] = set()  # local names bound to their SQL builders: select, func, ...
    found: list[tuple[int, str]] = []

    def report(node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        found.append((line, f"{filename}:{line}: {what}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_sql_package(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and _is_sql_package(node.module):
            for alias in node.names:
                if alias.name in SQL_NAMES:
                    names.add(alias.asname or alias.name)
                    report(node, f"imports {alias.name} from {node.module}")

    def builds_sql(func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in names
        if isinstance(func, ast.Attribute):
            base = func.value
            if isinstance(base, ast.Name) and base.id in names:  # func.count(...)
                return True
            if isinstance(base, ast.Name) and base.id in modules:  # sa.select(...), sa.text(...)
                return func.attr in SQL_NAMES
            return builds_sql(base) if isinstance(base, ast.Attribute) else False  # sa.func.count(...)
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and builds_sql(node.func):
            report(node, f"calls {ast.unparse(node.func)}(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and RAW_SQL.match(node.value):
            report(node, f"raw SQL {node.value.strip()[:40]!r}")
    return [text for _, text in sorted(found)]


def test_services_build_no_sql() -> None:
    found: list[str] = []
    for path in sorted(SERVICES.glob("*.py")):
        found += sql_constructions(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "SQL belongs in storage/ (a repository method or storage/queries/):\n" + "\n".join(
        found
    )


def test_the_sql_check_catches_each_kind_of_construction() -> None:
    source = """
import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlalchemy import text as raw

async def f(session, table):
    await session.exec(select(table))
    await session.exec(sa.delete(table))
    await session.exec(raw("select 1"))
    n = func.count()
    m = sa.func.max(table.c.id)
    await session.exec("UPDATE customer SET stage = 'x'")
"""
    found = sql_constructions(source)
    assert any("imports select from sqlmodel" in f for f in found)
    assert any("imports func from sqlmodel" in f for f in found)
    assert any("imports text from sqlalchemy" in f for f in found)
    for call in ("select(...)", "sa.delete(...)", "raw(...)", "func.count(...)", "sa.func.max(...)"):
        assert any(f.endswith(f"calls {call}") for f in found), (call, found)
    assert any('raw SQL "UPDATE customer' in f for f in found)


def test_the_sql_check_leaves_ordinary_code_alone() -> None:
    source = '''
"""Update the counters. Select a script, delete nothing."""
from collections import Counter
from sqlmodel.ext.asyncio.session import AsyncSession
from storage.queries import digest as queries

def f(counts: Counter[str], other: Counter[str], d: dict[str, int]) -> str:
    counts.update(other)
    d.update({"a": 1})
    queries.select_nothing()
    return "SELECTED" + "删除" + "update later"
'''
    assert sql_constructions(source) == []


# -- import cycles --------------------------------------------------------------------------------


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of these top-level packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, source: str, known: Collection[str], is_package: bool = False) -> set[str]:
    """The known modules ``module``'s source imports, anywhere in it (top level, functions,
    ``if TYPE_CHECKING:``). ``from a import b`` is module ``a.b`` when that is a module, else ``a``."""
    edges: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    edges.add(f"{base}.{alias.name}")
                elif base in known:
                    edges.add(base)
    edges.discard(module)
    return edges


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    files = module_files(root, packages)
    return {
        name: imports_of(name, path.read_text(encoding="utf-8"), files, path.stem == "__init__")
        for name, path in files.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start (a -> b -> a), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = pending.pop(0)
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, sorted(graph.get(nxt, ()))))
                path.append(nxt)
                on_path.add(nxt)
    return None


def test_no_import_cycles_in_bot_and_storage() -> None:
    graph = import_graph(ROOT, ("bot", "storage"))
    assert "bot.services.digest" in graph and "storage.queries.digest" in graph["bot.services.digest"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle_and_prints_it() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}) is None  # a diamond
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_import_graph_sees_type_checking_function_and_relative_imports() -> None:
    known = {"pkg", "pkg.app", "pkg.sim", "pkg.util", "pkg.pages"}
    app = """
from typing import TYPE_CHECKING
from pkg import util
if TYPE_CHECKING:
    from pkg.sim import State
def mount():
    from . import pages
"""
    assert imports_of("pkg.app", app, known) == {"pkg.util", "pkg.sim", "pkg.pages"}
    sim = "from pkg.app import PAGES\nimport pkg.util\n"
    assert imports_of("pkg.sim", sim, known) == {"pkg.app", "pkg.util"}
    graph = {"pkg.app": imports_of("pkg.app", app, known), "pkg.sim": imports_of("pkg.sim", sim, known)}
    assert find_cycle(graph) == ["pkg.app", "pkg.sim", "pkg.app"]
