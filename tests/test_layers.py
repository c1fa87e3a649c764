"""The package's shape, kept by a test: no import cycle, and no import from a lower layer to a
higher one (``docs/design.md`` draws the layers).

Every ``import`` in ``bot/`` counts, those inside functions too (a lazy import hides a cycle
from Python, not from this test); only imports under ``if TYPE_CHECKING:`` are left out,
since they never run.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

BOT = REPO / "bot"

# The pure core imports nothing of ours but each other (and the errors every layer raises).
CORE = {
    "bot.money", "bot.periods", "bot.pnl", "bot.errors", "bot.text", "bot.metrics",
    "bot.metrics_input", "bot.journal",
}  # fmt: skip
# What a layer must never import, by prefix.
ABOVE_ADAPTERS = ("bot.jobs", "bot.cli", "bot.exits", "bot.wiring", "bot.output", "bot.demo",
                  "bot.doctor", "bot.status", "bot.alerts")  # fmt: skip
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bot.dashboard": ABOVE_ADAPTERS,
    "bot.mail": ABOVE_ADAPTERS,
    "bot.ledger": ABOVE_ADAPTERS,
    "bot.billing_store": ABOVE_ADAPTERS,
    "bot.books_store": ABOVE_ADAPTERS,
    "bot.xero": ABOVE_ADAPTERS,
    "bot.records": ABOVE_ADAPTERS,
    "bot.stripe_source": ABOVE_ADAPTERS,
    "bot.stripe_port": ABOVE_ADAPTERS,
    "bot.reports": ABOVE_ADAPTERS,
    # Jobs receive their collaborators: no vendor SDK, no adapter picked by name, nothing above.
    "bot.jobs": (
        "bot.cli",
        "bot.exits",
        "bot.wiring",
        "bot.output",
        "bot.demo",
        "bot.doctor",
        "bot.stripe_source",
        "bot.dashboard.sheets",
        "bot.dashboard.sheets_http",
        "bot.dashboard.sheets_requests",
        "bot.dashboard.workbook",
        "bot.mail.resend_sender",
        "bot.xero",
        "xero_python",
        "stripe",
        "gspread",
        "resend",
    ),
    # A month never starts a day: daily may start monthly, not the other way round.
    "bot.jobs.monthly": ("bot.jobs.daily",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in BOT.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                out.update(id(n) for n in ast.walk(child))
    return out


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every module ``name`` imports at run time (ours resolved to modules, others by name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in known else base


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: {m for m in imports(name, path, known) if m != name}
        for name, path in sorted(mods.items())
    }


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    ours = {k: {m for m in v if m in g} for k, v in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(ours[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(ours):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle() -> None:
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()) or [])


def test_the_core_imports_only_the_core() -> None:
    g = graph()
    for name in sorted(CORE & set(g)):
        ours = {m for m in g[name] if m.startswith("bot")}
        assert ours <= CORE, (name, sorted(ours - CORE))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_upwards(layer: str) -> None:
    g = graph()
    members = [m for m in g if m == layer or m.startswith(layer + ".")]
    assert members, layer
    bad = [
        (m, imp)
        for m in members
        for imp in sorted(g[m])
        if any(imp == f or imp.startswith(f + ".") for f in FORBIDDEN[layer])
        and not (m.startswith(layer + ".") and layer == "bot.jobs.monthly")
    ]
    assert not bad, bad


def test_the_guard_sees_a_cycle_and_a_lazy_import() -> None:
    """The test's own machinery, on made-up modules: a cycle through a function-level import
    is found, and an import under TYPE_CHECKING is not counted."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import bot.x\ndef f():\n    import bot.y\n"
    tree = ast.parse(src)
    skip = _type_checking_only(tree)
    found = [
        a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import) and id(n) not in skip
        for a in n.names
    ]
    assert found == ["bot.y"]


def test_no_module_outside_the_sandbox_is_huge() -> None:
    sizes = {
        module_name(p): len(p.read_text(encoding="utf-8").splitlines())
        for p in BOT.rglob("*.py")
        if "sandbox" not in p.parts
    }
    assert max(sizes.values()) <= 900, max(sizes.items(), key=lambda kv: kv[1])
    assert sizes["bot.cli"] < 400


def test_the_code_cites_no_document_outside_the_repository() -> None:
    """What a reader needs is in the code or in docs/, not in a spec or an issue elsewhere."""
    pattern = re.compile(r"PRODUCT\.md|reference/[a-z-]+\.md|\bissue \d+|§\d")
    cited = [
        f"{p.relative_to(REPO)}:{n}"
        for p in BOT.rglob("*.py")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not cited, cited
