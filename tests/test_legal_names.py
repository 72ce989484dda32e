"""Where the legal names at the cursor are all known (lever ``complete_names``), and which."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from lint_bridge.api import CheckSettings
from lint_bridge.module_scan import MODULE_DUNDERS
from lint_bridge.verify import Verifier
from lsp.core import legal_names as legal
from lsp.core.legal_names import LegalNames, legal_names, name_constraint, rebound_names
from lsp.core.pipeline_types import Cursor

HELPERS = '''"""Helpers."""

LIMIT = 3


def parse_line(text):
    return text.split()


class Thing:
    size = 1

    def __init__(self):
        self.weight = 2

    def grow(self):
        return self.size + 1
'''
OPEN = "def __getattr__(name):\n    return name\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    package = root / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text(HELPERS)
    (package / "lazy.py").write_text(OPEN)
    (package / "starred.py").write_text("from no_such_module_anywhere import *\n")
    return root


@pytest.fixture(scope="module")
def verifier(workspace: Path) -> Verifier:
    return Verifier(CheckSettings(ruff=False), workspace_root=workspace)


def at(workspace: Path, marked: str, path: str = "app.py") -> Cursor:
    """A cursor where ``|`` is in ``marked``."""
    return Cursor(
        path=path,
        language="python",
        text=marked.replace("|", ""),
        offset=marked.index("|"),
        abs_path=workspace / path,
    )


def names_at(
    workspace: Path, verifier: Verifier, marked: str, path: str = "app.py"
) -> LegalNames | None:
    return legal_names(at(workspace, marked, path), verifier.resolver)


def test_complete_after_the_dot_of_an_imported_workspace_module(
    workspace: Path, verifier: Verifier
) -> None:
    for marked in (
        "from shop import helpers\n\nhelpers.|",
        "import shop.helpers\n\nshop.helpers.|",
        "import shop.helpers as h\n\nprint(h.|)",
        "import shop.helpers as h\n\nprint(h.|",  # an unclosed bracket: the line does not parse
    ):
        found = names_at(workspace, verifier, marked)
        assert found is not None, marked
        assert found.names - MODULE_DUNDERS == {"LIMIT", "parse_line", "Thing"}, marked
        assert found.typed == ""


def test_the_typed_part_of_the_name_is_reported(workspace: Path, verifier: Verifier) -> None:
    found = names_at(workspace, verifier, "from shop import helpers\nx = helpers.pa|")
    assert found is not None and found.typed == "pa" and "parse_line" in found.names


def test_complete_after_a_standard_module_and_a_submodule(
    workspace: Path, verifier: Verifier
) -> None:
    found = names_at(workspace, verifier, "import os\n\nos.|")
    assert found is not None and {"path", "getcwd", "environ"} <= found.names
    assert "getcwdu" not in found.names  # Python 2's, never here
    path = names_at(workspace, verifier, "import os\n\nos.path.|")
    assert path is not None and {"join", "exists"} <= path.names and "getcwd" not in path.names


def test_complete_after_a_class_the_index_reads(workspace: Path, verifier: Verifier) -> None:
    found = names_at(workspace, verifier, "from shop.helpers import Thing\n\nThing.|")
    assert found is not None
    assert {"size", "grow", "mro", "__name__"} <= found.names  # its body, object's, type's


def test_complete_after_from_import(workspace: Path, verifier: Verifier) -> None:
    for marked in (
        "from shop.helpers import |",
        "from shop.helpers import LIMIT, |",
        "from shop.helpers import (\n    LIMIT,\n    pa|",
    ):
        found = names_at(workspace, verifier, marked)
        assert found is not None, marked
        assert found.names - MODULE_DUNDERS == {"LIMIT", "parse_line", "Thing"}, marked
    relative = names_at(workspace, verifier, "from .helpers import |", "shop/other.py")
    assert relative is not None and "parse_line" in relative.names
    package = names_at(workspace, verifier, "from shop import |")
    assert package is not None and {"helpers", "lazy"} <= package.names  # its submodules


def test_no_set_after_an_instance_or_where_names_may_be_anything(
    workspace: Path, verifier: Verifier
) -> None:
    for marked in (
        "from shop.helpers import Thing\n\nthing = Thing()\nthing.|",  # an instance
        "class A:\n    def f(self):\n        return self.|",
        "import os\n\n\ndef f(os):\n    return os.|",  # a parameter shadows the module
        "import os\n\nfor os in range(3):\n    os.|",
        "from shop import lazy\n\nlazy.|",  # module __getattr__: any name
        "from shop import starred\n\nstarred.|",  # a star import of what cannot be read
        "import no_such_module_anywhere\n\nno_such_module_anywhere.|",
        "import os\n\n# see os.|",  # a comment
        "import os\n\nx = 'os.|",  # a string
        'import os\n\n"""\nos.|',  # a docstring
        "import os\n\nos.|path",  # the identifier goes on after the cursor
        "from shop.helpers import LIMIT,|",  # the next name wants a blank first
        "import os.|",  # a module path: only submodules
        "from os.|",
        "x = f().|",
        "x = [1][0].|",
    ):
        assert names_at(workspace, verifier, marked) is None, marked


def test_the_constraint_carries_the_matching_names_the_typed_part_and_the_healed_blank(
    workspace: Path, verifier: Verifier
) -> None:
    constraint = name_constraint(at(workspace, "from shop.helpers import |"), verifier, " ")
    assert constraint is not None
    assert set(constraint.names) - MODULE_DUNDERS == {"LIMIT", "parse_line", "Thing"}
    assert constraint.lead == " " and constraint.typed == ""
    typed = name_constraint(at(workspace, "from shop import helpers\nhelpers.pa|"), verifier, "")
    assert typed is not None and typed.names == ("parse_line",) and typed.typed == "pa"


def test_no_constraint_without_a_check_of_names_or_a_name_that_fits(
    workspace: Path, verifier: Verifier
) -> None:
    cursor = at(workspace, "from shop import helpers\nhelpers.|")
    assert name_constraint(cursor, None, "") is None
    no_symbols = Verifier(CheckSettings(ruff=False, symbols=False), workspace_root=workspace)
    assert name_constraint(cursor, no_symbols, "") is None
    assert (
        name_constraint(at(workspace, "from shop import helpers\nhelpers.zz|"), verifier, "")
        is None
    )
    javascript = Cursor("app.js", "javascript", "os.", 3)
    assert name_constraint(javascript, verifier, "") is None


def test_a_failure_computing_the_set_is_one_log_line_and_no_constraint(
    workspace: Path,
    verifier: Verifier,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(cursor: Cursor, resolver: object) -> None:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(legal, "legal_names", broken)
    with caplog.at_level(logging.ERROR, logger="lsp.core.legal_names"):
        assert name_constraint(at(workspace, "import os\nos.|"), verifier, "") is None
    assert len(caplog.records) == 1 and "decoding freely" in caplog.records[0].getMessage()


def test_rebound_names_are_every_binding_but_top_level_imports_and_classes() -> None:
    tree = ast.parse(
        "import os\nimport a.b\nfrom m import n as k\nclass C:\n    pass\n"
        "x = 1\nfor i, (j, *r) in z:\n    pass\n"
        "def f(p, *q, w=1, **kw):\n    import inner\n    global g\n    class D: pass\n"
        "try:\n    pass\nexcept E as err:\n    pass\n"
        "match v:\n    case {'k': cap, **rest}:\n        pass\n"
    )
    assert rebound_names(tree) == {
        *("x", "i", "j", "r", "f", "p", "q", "w", "kw", "inner", "g", "D", "err", "cap", "rest"),
    }
