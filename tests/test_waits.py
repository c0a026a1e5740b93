"""No fixed sleep stands in for a condition: a test waits on the condition itself, with a timeout
that fails it (harness.procs.wait_until). A ``time.sleep`` is allowed only as the interval of a
polling loop (inside a ``while``), never as a bare "long enough" pause."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# The files held to the rule (issue 21 converted them); add a file once its pauses are conditions.
CHECKED = ["test_sources.py"]


def bare_sleeps(path: Path) -> list[int]:
    """Lines of ``time.sleep(...)`` calls in ``path`` that are not inside a ``while`` loop."""
    out: list[int] = []

    def visit(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "sleep" and getattr(node.func.value, "id", None) == "time" \
                and not in_loop:
            out.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_loop or isinstance(node, ast.While))
    visit(ast.parse(path.read_text()), False)
    return out


@pytest.mark.parametrize("name", CHECKED)
def test_no_fixed_sleep_stands_in_for_a_condition(name):
    assert bare_sleeps(TESTS / name) == [], f"{name}: time.sleep outside a polling loop"


def test_a_bare_sleep_is_found(tmp_path):
    f = tmp_path / "t.py"
    f.write_text("import time\ndef t():\n    time.sleep(1.5)\n    while True:\n        time.sleep(0.05)\n")
    assert bare_sleeps(f) == [3]
