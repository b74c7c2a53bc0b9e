"""Docstrings are the commands' --help and the library's reference: a shell command continued with a backslash
must keep its line break there. In a docstring that is not raw, a backslash at the end of a line joins the two
lines (Python's line continuation), so ``--help`` prints the command as one run-on line."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("idsf_pyg", "experiments", "preprocessing") for p in (ROOT / folder).rglob("*.py"))
ODD_BACKSLASHES_AT_END = re.compile(r"(?<!\\)(\\\\)*\\$")


def docstring_nodes(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                yield first.value


def joined_lines(path):
    """The line numbers of docstring lines that end in an unescaped backslash outside a raw string."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in docstring_nodes(ast.parse(source)):
        segment = ast.get_source_segment(source, node)
        if segment.lstrip("bBuUfF")[:1] in "rR":
            continue
        found += [node.lineno + i for i, line in enumerate(segment.splitlines()) if ODD_BACKSLASHES_AT_END.search(line)]
    return found


def test_the_check_finds_a_joined_line_and_passes_escaped_or_raw_ones(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Run:\n\n    cmd --a \\\n        --b\n"""\n\n\ndef f():\n    r"""raw \\\n    ok"""\n\n\n'
                      'def g():\n    """escaped \\\\\n    ok"""\n')
    assert ast.get_docstring(ast.parse(sample.read_text()), clean=False) == "Run:\n\n    cmd --a         --b\n"
    assert joined_lines(sample) == [3]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_docstring_joins_a_continued_command_line(path):
    lines = joined_lines(path)
    assert not lines, f"{path.relative_to(ROOT)}, lines {lines}: a backslash ends a docstring line and joins it " \
                      "to the next in --help (write two)"
