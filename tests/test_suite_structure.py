"""The suite's own rules (issue 15 §7), read from the source with ``ast``:

- code the tests share lives in ``tests/support/``; no file under tests/ imports a test module
  or a conftest (``from tests.test_sync import ...``, ``from tests.conda.conftest import ...``,
  a bare ``from scanner_samples import ...`` that works only because pytest put a test
  directory on ``sys.path``, a relative import of a sibling, ``importlib.import_module`` of one);
- no test reads files outside the repository (the developers' sibling notes directory, by a
  relative or an absolute path, or a path climbed out of the checkout and joined with its
  name, ``OUTSIDE_NAME``): a fresh clone runs whole;
- gapsync itself never imports the tests, and the benchmarks use only ``tests.support``.

Each offence is reported as ``file:line: what``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SUPPORT = ("tests", "support")
# Built from parts so that this file does not match itself.
OUTSIDE_NAME = "sha" + "red"
OUTSIDE = re.compile(r"(^|[/\\])\.\.[/\\]" + OUTSIDE_NAME + r"([/\\]|$)|/work/" + OUTSIDE_NAME + r"([/\\]|$)")


def _python_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*.py")):
        if "__pycache__" not in p.parts:
            yield p


def _module_of(path: Path, root: Path) -> tuple[str, ...]:
    rel = path.relative_to(root).with_suffix("")
    parts = tuple(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _local_names(importer: Path, tests: Path) -> set[str]:
    """Top-level names a bare import would find in tests/: pytest puts test directories (those
    without ``__init__.py``) on ``sys.path``, so a sibling module or package is importable bare."""
    names = set()
    for d in {importer.parent, tests}:
        for p in d.iterdir():
            if p.suffix == ".py" and p.stem != "__init__":
                names.add(p.stem)
            elif p.is_dir() and (p / "__init__.py").exists():
                names.add(p.name)
    return names


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _forbidden_module(name: str) -> bool:
    """``name`` (dotted, absolute) names a module under tests/ that is not in tests/support/."""
    parts = tuple(name.split("."))
    return parts[0] == "tests" and len(parts) > 1 and parts[:2] != SUPPORT


def _is_test_module_name(name: str) -> bool:
    last = name.split(".")[-1]
    return last == "conftest" or last.startswith("test_")


def import_problems(path: Path, root: Path) -> list[str]:
    """Imports in ``path`` (a file under ``root``/tests) of a test module or a conftest."""
    tests = root / "tests"
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = _module_of(path, root)
    local = _local_names(path, tests)
    out = []

    def check(lineno: int, name: str, via: str) -> None:
        top = name.split(".")[0]
        if _forbidden_module(name):
            out.append(f"{rel}:{lineno}: {via} {name}: import shared test code from tests.support, "
                       "never from a test module or a conftest")
        elif top != "tests" and (_is_test_module_name(name) or top in local):
            out.append(f"{rel}:{lineno}: {via} {name}: a test module or helper found only through the "
                       "directory pytest puts on sys.path; import it from tests.support")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(node.lineno, alias.name, "import")
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: resolved against this file's package
            package = here if path.name == "__init__.py" else here[:-1]
            base = package[:len(package) - (node.level - 1)]
            target = ".".join(base + (tuple(node.module.split(".")) if node.module else ()))
            for name in [target] if node.module else [f"{target}.{a.name}" for a in node.names]:
                if not name.startswith("tests.support"):
                    out.append(f"{rel}:{node.lineno}: relative import of {name}: import shared test code "
                               "from tests.support")
        elif isinstance(node, ast.ImportFrom):
            check(node.lineno, node.module or "", "from")
            if node.module == "tests" and any(a.name != "support" for a in node.names):
                out.append(f"{rel}:{node.lineno}: from tests import {', '.join(a.name for a in node.names)}: "
                           "only tests.support may be imported")
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if fname in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                check(node.lineno, node.args[0].value, f"{fname}(...)")
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets):
            for c in ast.walk(node.value):
                if isinstance(c, ast.Constant) and isinstance(c.value, str):
                    check(node.lineno, c.value, "pytest_plugins")
    return out


def outside_problems(path: Path, root: Path) -> list[str]:
    """Reads of files outside the repository: the sibling notes directory (``OUTSIDE``, relative
    or under /work), or a path joined with its name after climbing (``.parent``, ``.parents[n]``,
    ``".."``)."""
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = _docstring_nodes(tree)
    out = []

    def climbs(expr: ast.AST) -> bool:
        for n in ast.walk(expr):
            if isinstance(n, ast.Attribute) and n.attr in ("parent", "parents"):
                return True
            if isinstance(n, ast.Constant) and n.value == "..":
                return True
        return False

    def first_part(value: object) -> str:
        return re.split(r"[/\\]", value)[0] if isinstance(value, str) else ""

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if OUTSIDE.search(node.value):
                out.append(f"{rel}:{node.lineno}: {node.value[:80]!r} is outside the repository")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and first_part(node.right.value) == OUTSIDE_NAME and climbs(node.left):
            out.append(f"{rel}:{node.lineno}: a path joined with {node.right.value!r} after climbing out of the "
                       "checkout: the suite's data lives in the repository (tests.support.data)")
        elif isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and first_part(a.value) == OUTSIDE_NAME
                                                for a in node.args) and any(climbs(a) for a in node.args):
            out.append(f"{rel}:{node.lineno}: a path joined with {OUTSIDE_NAME!r} after climbing out of the checkout")
    return out


def test_no_file_in_tests_imports_a_test_module_or_a_conftest():
    problems = [p for f in _python_files(TESTS) for p in import_problems(f, ROOT)]
    assert not problems, "\n".join(problems)


def test_no_test_reads_files_outside_the_repository():
    problems = [p for f in _python_files(TESTS) for p in outside_problems(f, ROOT)]
    assert not problems, "\n".join(problems)


def test_gapsync_never_imports_the_tests_and_benchmarks_only_tests_support():
    problems = []
    for top in ("gapsync", "bench"):
        for f in _python_files(ROOT / top):
            if "out" in f.relative_to(ROOT / top).parts[:1]:
                continue  # bench/out: what a benchmark downloaded, not our code
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                for name in names:
                    if name.split(".")[0] == "tests" and (top == "gapsync" or _forbidden_module(name) or name == "tests"):
                        problems.append(f"{f.relative_to(ROOT)}:{node.lineno}: imports {name}")
    assert not problems, "\n".join(problems)


# -- the checks can fail: each kind of offence, planted in a tree of its own -----------------------------
@pytest.fixture
def planted(tmp_path: Path) -> Path:
    files = {
        "tests/conftest.py": "import pytest\n",
        "tests/support/__init__.py": "",
        "tests/support/cli.py": "X = 1\n",
        "tests/scanner/samples_here.py": "Y = 2\n",
        "tests/scanner/test_a.py": "from samples_here import Y\nfrom test_b import helper\n",
        "tests/scanner/test_b.py": "def helper():\n    pass\n",
        "tests/conda/__init__.py": "",
        "tests/conda/conftest.py": "def serve_dir():\n    pass\n",
        "tests/conda/test_c.py": ("from . import conftest\nfrom .conftest import serve_dir\n"
                                  "from tests.support.cli import X\n"),
        "tests/test_d.py": ("from tests.conftest import cli\nimport tests.test_e\nfrom tests.conda import conftest\n"
                            "import importlib\nm = importlib.import_module('tests.test_e')\n"
                            "pytest_plugins = ['tests.conda.conftest']\n"),
        "tests/test_e.py": ('"""Reads ../' + OUTSIDE_NAME + '/x in its docstring only: allowed."""\nfrom pathlib import Path\n'
                            "A = Path(__file__).resolve().parents[2] / 'shared' / 'corpus'\n"
                            "B = '../" + OUTSIDE_NAME + "/advisories'\nC = '/work/" + OUTSIDE_NAME + "/x'\n"
                            "import os\nD = os.path.join(os.path.dirname(__file__), '..', 'shared')\n"
                            "E = Path('data') / 'shared'  # inside the repository: allowed\n"),
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_import_check_names_every_planted_offence(planted):
    problems = [p for f in _python_files(planted / "tests") for p in import_problems(f, planted)]
    where = sorted(p.split(": ", 1)[0] for p in problems)
    assert where == ["tests/conda/test_c.py:1", "tests/conda/test_c.py:2",
                     "tests/scanner/test_a.py:1", "tests/scanner/test_a.py:2",
                     "tests/test_d.py:1", "tests/test_d.py:2", "tests/test_d.py:3", "tests/test_d.py:5",
                     "tests/test_d.py:6"], "\n".join(problems)


def test_the_outside_check_names_every_planted_read(planted):
    problems = outside_problems(planted / "tests/test_e.py", planted)
    assert sorted(p.split(": ", 1)[0] for p in problems) == ["tests/test_e.py:3", "tests/test_e.py:4",
                                                              "tests/test_e.py:5", "tests/test_e.py:7"], problems
