"""The qualifiers whose attributes are all known, for a generation (lever ``complete_names``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lint_bridge.api import CheckSettings
from lint_bridge.module_scan import MODULE_DUNDERS
from lint_bridge.verify import Verifier
from lsp.core import qualified_names as qualified
from lsp.core.pipeline_types import Cursor
from lsp.core.qualified_names import qualified_names
from model.runtime.api import QualifiedNames

HELPERS = '''"""Helpers."""

LIMIT = 3


def parse_line(text):
    return text.split()


class Thing:
    size = 1

    def grow(self):
        return self.size + 1
'''
HEADER = (
    "import os\n"
    "import shutil as sh\n"
    "import shop.helpers\n"
    "from shop import helpers, lazy, starred\n"
    "from shop.helpers import Thing, LIMIT\n"
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    package = root / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text(HELPERS)
    (package / "lazy.py").write_text("def __getattr__(name):\n    return name\n")
    (package / "starred.py").write_text("from no_such_module_anywhere import *\n")
    return root


@pytest.fixture
def verifier(workspace: Path) -> Verifier:
    return Verifier(CheckSettings(ruff=False), workspace_root=workspace)


def at(workspace: Path, marked: str) -> Cursor:
    return Cursor(
        path="app.py",
        language="python",
        text=marked.replace("|", ""),
        offset=marked.index("|"),
        abs_path=workspace / "app.py",
    )


def table(found: QualifiedNames | None) -> dict[str, set[str]]:
    assert found is not None
    return {qualifier: set(names) for qualifier, names in found.attributes}


def test_imported_modules_and_classes_read_whole_are_qualifiers(
    workspace: Path, verifier: Verifier
) -> None:
    found = qualified_names(at(workspace, HEADER + "\nx = |"), verifier, "")
    names = table(found)
    assert {"os", "sh", "shop", "shop.helpers", "helpers", "Thing"} == set(names)
    assert names["helpers"] - MODULE_DUNDERS == {"LIMIT", "parse_line", "Thing"}
    assert names["shop.helpers"] == names["helpers"]
    assert {"path", "getcwd", "environ"} <= names["os"] and "copyfile" in names["sh"]
    assert {"size", "grow", "mro"} <= names["Thing"]
    assert "helpers" in names["shop"]  # a package's submodules
    # Stubs leave private names out: after os._ decoding stays free; helpers are read whole.
    assert found is not None and {"os", "sh"} <= found.private and "helpers" not in found.private
    # Not qualifiers: an open module, one that star-imports what cannot be read, a constant.
    assert not {"lazy", "starred", "LIMIT"} & set(names)


def test_modules_come_before_classes(workspace: Path, verifier: Verifier) -> None:
    found = table(qualified_names(at(workspace, HEADER + "\nx = |"), verifier, ""))
    kinds = [qualifier == "Thing" for qualifier in found]
    assert kinds == sorted(kinds)


def test_a_name_the_buffer_binds_otherwise_is_no_qualifier(
    workspace: Path, verifier: Verifier
) -> None:
    for body in (
        "def f(os, helpers):\n    return 1\n",  # parameters
        "os = helpers = None\n",  # assignments
        "def f():\n    import os, shop.helpers as helpers\n",  # imports in a function
        "for os in range(3):\n    helpers = 1\n",
        "class os:\n    pass\n\n\ndef helpers():\n    pass\n",
    ):
        names = table(qualified_names(at(workspace, f"{HEADER}\n{body}\nx = |"), verifier, ""))
        assert "os" not in names and "helpers" not in names, body
        assert "sh" in names, body


def test_a_name_the_cursor_line_may_bind_is_left_out_but_one_being_typed_is_not(
    workspace: Path, verifier: Verifier
) -> None:
    assert "os" not in table(qualified_names(at(workspace, HEADER + "os = |"), verifier, ""))
    assert "sh" not in table(qualified_names(at(workspace, HEADER + "sh, y = |"), verifier, ""))
    typing = table(qualified_names(at(workspace, HEADER + "x = os|"), verifier, ""))
    assert "os" in typing
    assert "os" in table(qualified_names(at(workspace, HEADER + "x = os.path|"), verifier, ""))


def test_the_buffers_own_stores_are_names(workspace: Path, verifier: Verifier) -> None:
    found = qualified_names(at(workspace, HEADER + "helpers.EXTRA = 1\nx = |"), verifier, "")
    assert "EXTRA" in table(found)["helpers"]


def test_the_line_sent_is_the_prompts_end(workspace: Path, verifier: Verifier) -> None:
    found = qualified_names(at(workspace, HEADER + "    x = |"), verifier, " ")
    assert found is not None and found.line == "    x ="  # the healed blank left out
    long = qualified_names(at(workspace, HEADER + "x = " + "a" * 500 + " + |"), verifier, "")
    assert long is not None and long.line.startswith(".") and len(long.line) == 401


def test_no_table_where_names_are_not_checked_or_not_code(
    workspace: Path, verifier: Verifier
) -> None:
    cursor = at(workspace, HEADER + "x = |")
    assert qualified_names(cursor, None, "") is None
    no_symbols = Verifier(CheckSettings(ruff=False, symbols=False), workspace_root=workspace)
    assert qualified_names(cursor, no_symbols, "") is None
    assert qualified_names(at(workspace, HEADER + "# see |"), verifier, "") is None
    assert qualified_names(at(workspace, HEADER + "x = 'a |"), verifier, "") is None
    assert qualified_names(at(workspace, "x = 1\ny = |"), verifier, "") is None  # no imports
    assert qualified_names(Cursor("app.js", "javascript", "os.", 3), verifier, "") is None


def test_the_table_is_bounded_modules_first(
    workspace: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qualified, "MAX_QUALIFIERS", 2)
    two = table(qualified_names(at(workspace, HEADER + "x = |"), verifier, ""))
    assert len(two) == 2 and "Thing" not in two
    monkeypatch.setattr(qualified, "MAX_QUALIFIERS", 64)
    monkeypatch.setattr(qualified, "MAX_NAMES", 60)  # os and shutil have more each
    small = table(qualified_names(at(workspace, HEADER + "\nx = |"), verifier, ""))
    assert small and not {"os", "sh"} & set(small)
    assert sum(len(names) for names in small.values()) <= 60


def test_one_table_per_buffer_while_the_cursor_line_changes(
    workspace: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    compute = qualified.attribute_table

    def counting(text: str, path: Path | None, resolver: object) -> qualified.AttributeTable:
        calls.append(text)
        return compute(text, path, resolver)  # type: ignore[arg-type]

    monkeypatch.setattr(qualified, "attribute_table", counting)
    for typed in ("x = |", "x = o|", "x = os.pa|"):
        assert qualified_names(at(workspace, HEADER + typed), verifier, "") is not None
    assert len(calls) == 1


def test_a_failure_is_one_log_line_and_no_table(
    workspace: Path,
    verifier: Verifier,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(text: str, path: Path | None, resolver: object) -> None:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(qualified, "attribute_table", broken)
    with caplog.at_level(logging.ERROR, logger="lsp.core.qualified_names"):
        assert qualified_names(at(workspace, HEADER + "x = |"), verifier, "") is None
    assert len(caplog.records) == 1 and "decoding freely" in caplog.records[0].getMessage()
